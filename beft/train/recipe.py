"""The one training recipe: setup / train / evaluate / cleanup, for every backend and every step.

It never asks which backend (beft/backends/protocol.py) or which step (beft/train/step.py) it runs.

    from beft.config import load_config
    from beft.train import Trainer
    Trainer(load_config(overrides=["task=sst2", "bias=v"])).run()
"""

from __future__ import annotations

import math
import random
import time

import torch

from .. import methods, quiet, resume, stop, tracking
from ..backends import dist
from ..backends.choose import make_backend
from ..config import TrainConfig, dump_config
from ..memory import PeakMemory, tune_allocator
from ..models import load_config as load_model_config
from ..models import resolve_arch
from ..outputs import RunDir, atomic_write_json, atomic_write_text
from ..tasks import task_for
from . import checkpoint, checks, hooks
from . import step as steps
from .adapter_writer import AdapterWriter
from .batches import Batches
from .errors import TrainingError
from .evaluate import evaluate
from .optim import lr_lambda, optimizer_builder
from .report import announce_line, done_line, memory_report, progress, result_record, step_record
from .state import TrainState


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.run_dir = RunDir(cfg.output_dir)
        self.bar = None

    # ------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        quiet.apply(cfg.log_level)
        tracking.check(cfg.report_to)  # a missing tracker package: before anything loads
        self.backend = make_backend(cfg)
        self.backend.init()
        self.rank0 = dist.rank() == 0
        if self.rank0:
            self.run_dir.prepare(overwrite=cfg.overwrite, resume=cfg.resume)
            if cfg.resume:
                self.run_dir.recover_checkpoint()
        dist.barrier()
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if cfg.bias == "auto":  # the ranking run's choice; config.yaml records the resolved target
            from ..rank import auto_target

            cfg.bias = auto_target(cfg.rank_from)
        changes = resume.check(self.run_dir, cfg) if cfg.resume else {}  # before anything loads
        model_cfg = load_model_config(cfg.model)
        self.arch = resolve_arch(cfg.arch, model_cfg)
        checks.check_arch(cfg, self.arch, model_cfg)
        self.task = task_for(cfg.task, self.arch, cfg.data)  # own data: every split read here
        self.splits = self.task.load(
            cfg.data_dir, cfg.regime, cfg.seed, cfg.data.n_train, cfg.data.n_eval
        )
        micro = checks.micro_batch(cfg, dist.world_size(), len(self.splits.train))
        self._build_model()
        self.steps_per_epoch = len(self.splits.train) // cfg.batch_size
        total = cfg.epochs * self.steps_per_epoch if cfg.epochs else cfg.max_steps
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.head_lr = cfg.zo.head_lr if cfg.optim.kind == "zo" and cfg.zo.head_lr else cfg.lr
        warmup = cfg.optim.warmup_steps or int(cfg.optim.warmup_ratio * self.total_steps)
        self.lr_fn = lr_lambda(self.total_steps, warmup, cfg.optim.schedule)
        if self.method.trains:  # the backend may replace parameters (FSDP2: DTensor shards)
            optim = optimizer_builder(cfg, self.head_lr, self.lr_fn)
            self.params = self.backend.prepare(self.model, self.params, optim)
        else:  # evaluation only: no optimizer
            checks.check_evaluates(cfg, self.backend)
            self.backend.model = self.model
        if self.selection is not None:
            self.backend.fill_initial(self.selection)
        self.step = steps.build(cfg, self.model, self.params, self.selection, self.backend,
                                self.task, self.head_lr, self.lr_fn)  # fmt: skip
        self.batches = Batches(self.splits.train, self.collate, micro, cfg.optim.grad_accum,
                               cfg.seed, self.backend.device)  # fmt: skip
        self.state = TrainState()
        if cfg.resume and (self.run_dir.last_checkpoint / "meta.json").is_file():
            self.state = checkpoint.resume(self.run_dir, self.backend, self.params, self.step,
                                           self.total_steps, changes, self.rank0)  # fmt: skip
        elif self.rank0:  # from step 0: an unfinished run's log, checkpoints, adapters go
            self.run_dir.start_over()
        if self.rank0:
            atomic_write_text(self.run_dir.config, dump_config(cfg))
            resume_step = self.state.step if cfg.resume else None
            self.trackers = tracking.Trackers(cfg.report_to, self.run_dir.path, cfg.to_dict(),
                                              resume_step=resume_step)  # fmt: skip
            print(announce_line(cfg, self.arch, self.backend.kind, self.counts, self.splits),
                  flush=True)  # fmt: skip
            for note in self.splits.notes:
                print(f"note: {note}", flush=True)
        dist.barrier()

    def _build_model(self) -> None:
        """The backend loads the base; the method selects (or reparametrises) what trains."""
        cfg, quant = self.cfg, None
        if cfg.quant != "none":
            from ..backends import quant as q

            quant = q.quantization_config(8 if cfg.quant == "8bit" else 4)
        self.model, self.tokenizer, head = self.backend.load_model(
            cfg.model, self.arch, num_labels=self.task.num_labels, quantization_config=quant
        )
        m = self.method = methods.build(cfg.method, self.model, cfg, head,
                                        read_full=self.backend.full_state)  # fmt: skip
        self.selection, self.params, self.counts = m.selection, m.params, m.trainable
        self.model = m.model if m.model is not None else self.model
        if m.task_transform is not None:
            self.task = m.task_transform(self.task, self.splits)
        self.splits.notes.extend(m.notes)
        self.adapter = AdapterWriter(cfg, m, self.model, self.task)
        checks.check_fused_slices(cfg, self.selection, self.backend)
        checks.activation_checkpointing(cfg, self.model)

    def collate(self, examples: list[dict]) -> dict:
        return self.task.collate(self.tokenizer, examples, self.cfg.data.max_length)

    # ------------------------------------------------------------------------------ train
    def train(self) -> None:
        cfg, st, model = self.cfg, self.state, self.backend.model
        if not self.method.trains:  # zero-shot / ICL: one evaluation, no steps
            return self.evaluate_epoch(0)
        if self.rank0:
            self.bar = progress(self.total_steps, "train", initial=st.step)
        if st.step == 0:
            self.step.before_training(self)
        self.batches.take_tokens()  # tokens count from the first step
        t_log, n_log = time.perf_counter(), 0
        t_start = time.perf_counter() - st.train_seconds
        while st.step < self.total_steps or not st.final_evaluated():  # a kill may cut the last
            epoch, order = st.epoch, self.batches.order(st.epoch)
            model.train()
            for b in range(st.batch_in_epoch, self.steps_per_epoch):
                if st.step >= self.total_steps:
                    break
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                loss, grad_norm = self.step.run(model, self.batches.micro_batches(idx), st.step)
                if self.method.after_step is not None:
                    self.backend.after_step(self.method.after_step, self.selection)
                st.step, st.batch_in_epoch = st.step + 1, b + 1
                hooks.point("stepped", st.step)  # fault injection (tests only): beft/train/hooks.py
                loss_value, stopping = dist.mean_and_any(loss, stop.requested())
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"loss is {loss_value} at step {st.step} (epoch {epoch}); "
                        "lower lr, check the data, or use precision=fp32"
                    )
                if st.step == 1:  # where the loss started (beft/health.py)
                    st.first_loss = loss_value
                n_log += cfg.batch_size
                if self.rank0:
                    self.bar.update(1)
                    self.bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
                if st.step % cfg.log_every == 0 or st.step == self.total_steps:
                    lr, dt = cfg.lr * self.lr_fn(st.step - 1), time.perf_counter() - t_log
                    rec = step_record(st.step, epoch + 1, loss_value, lr, grad_norm, n_log,
                                      self.batches.take_tokens(), dt)  # fmt: skip
                    if self.rank0:
                        self.log(rec)
                        ex_s = f"{rec['examples_per_s']:.1f}"
                        self.bar.set_postfix(loss=f"{loss_value:.4f}", ex_s=ex_s)
                    t_log, n_log = time.perf_counter(), 0
                hooks.point("step", st.step)
                if stopping:
                    st.train_seconds = time.perf_counter() - t_start
                    self.save_checkpoint()
                    raise stop.Stopped(
                        f"stopped by {stop.signal_name() or 'a signal on another rank'} after "
                        f"step {st.step}; checkpoint written to {self.run_dir.last_checkpoint}; "
                        "rerun with resume=true to continue"
                    )
                every = cfg.checkpoint.every_steps
                if every and st.step % every == 0 and st.batch_in_epoch < self.steps_per_epoch:
                    st.train_seconds = time.perf_counter() - t_start
                    self.save_checkpoint()
            if st.batch_in_epoch >= self.steps_per_epoch or st.step >= self.total_steps:
                last = st.step >= self.total_steps
                if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                    self.evaluate_epoch(epoch + 1)
                if st.batch_in_epoch >= self.steps_per_epoch:
                    st.epoch, st.batch_in_epoch = epoch + 1, 0
                st.train_seconds = time.perf_counter() - t_start
                self.save_checkpoint()
                if self.bar is not None and not last:  # the bar's rate leaves out eval and saving
                    self.bar.unpause()
        if self.bar is not None:
            self.bar.close()

    # ------------------------------------------------------------------------------ evaluate
    def evaluate(self) -> dict:
        """The task's metrics on the evaluation split (every rank evaluates all of it)."""
        return evaluate(self.backend.model, self.task, self.splits.eval, self.collate,
                        self.backend, self.cfg.data.eval_batch_size, self.rank0)  # fmt: skip

    def evaluate_epoch(self, epoch: int) -> None:
        """epoch: numbered from 1 (the epoch the last step belongs to), as in checkpoints'
        meta.json; 0 for a method that only evaluates."""
        st, metrics = self.state, self.evaluate()
        if st.record_eval(epoch, metrics, self.task.main_metric):
            best_state = self.backend.full_state(self.params)
            if self.rank0 and self.selection is not None:
                self.adapter.write(self.run_dir.path / "adapter_best", best_state)
        if self.rank0:
            self.log({"step": st.step, "epoch": epoch, "eval": metrics})
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            print(f"epoch {epoch} step {st.step}: {shown}", flush=True)
        hooks.point("eval", st.step)

    def log(self, record: dict) -> None:  # rank 0: metrics.jsonl and the trackers (report_to)
        self.run_dir.log(record)
        self.trackers.log(record)

    def save_checkpoint(self) -> None:
        """Trainable parameters, optimizer, scheduler, RNG, data position; never the frozen base."""
        self.state.step_state = self.step.state_dict()
        checkpoint.save(self.run_dir, self.backend, self.params, self.state, self.cfg, self.rank0)

    # ------------------------------------------------------------------------------ cleanup
    def cleanup(self) -> dict | None:
        st, cfg = self.state, self.cfg
        final_state = self.backend.full_state(self.params)
        shards = self.backend.shard_report()
        memory = memory_report(self.memory, self.setup_seconds)
        result = None
        if self.rank0:
            if self.selection is not None:
                self.adapter.write(self.run_dir.adapter, final_state)
            hooks.point("result")
            losses = [r["loss"] for r in self.run_dir.records() if "loss" in r]
            result = result_record(cfg, st, task=self.task, splits=self.splits, arch=self.arch,
                                   counts=self.counts.as_dict(), backend=self.backend.kind,
                                   shards=shards, memory=memory, losses=losses)  # fmt: skip
            atomic_write_json(self.run_dir.result, result)  # last: its presence means finished
            self.trackers.close()
            adapter = self.selection is not None
            print(done_line(result, self.run_dir.path, cfg.report_to, adapter), flush=True)
        dist.barrier()
        self.backend.cleanup()
        return result

    def run(self) -> dict | None:
        """setup, train, cleanup. A failure (not a SIGTERM stop, which leaves a checkpoint to
        resume) puts back a finished run it was replacing (beft/outputs.py RunDir.failed)."""
        created, started = not self.run_dir.path.exists(), False
        tune_allocator()
        self.memory, t0 = PeakMemory().start(), time.perf_counter()
        try:
            self.setup()
            self.setup_seconds, started = time.perf_counter() - t0, True
            previous = stop.install()
            try:
                self.train()
            finally:
                stop.restore(previous)
                if self.bar is not None:  # an error then starts on its own line
                    self.bar.close()
            result = self.cleanup()
        except stop.Stopped:
            raise
        except BaseException:
            if dist.env_rank() == 0:
                self.run_dir.failed(created=created, started=started)
            raise
        if self.rank0:
            self.run_dir.drop_previous()
        return result
