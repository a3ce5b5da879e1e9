"""The one training recipe: setup / train / evaluate / cleanup, for every backend and every step.

It never asks which backend (beft/backends/protocol.py) or which step (beft/train/step.py) it runs.

    from beft.config import load_config
    from beft.train import Trainer
    Trainer(load_config(overrides=["task=sst2", "bias=v"])).run()
"""

from __future__ import annotations

import functools
import math
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from .. import __version__, health, methods, quiet, resume, stop, tracking
from ..backends import dist
from ..backends.choose import make_backend
from ..bias.adapter import save_adapter
from ..config import TrainConfig, dump_config
from ..memory import PeakMemory, tune_allocator
from ..models import base_identity, resolve_arch
from ..models import load_config as load_model_config
from ..outputs import RunDir, atomic_write_json, atomic_write_text
from ..tasks import label_maps, task_for
from . import checkpoint, checks, hooks
from . import step as steps
from .errors import TrainingError
from .optim import lr_lambda, optimizer_builder
from .report import done_line, memory_report, progress, result_record
from .state import TrainState


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.run_dir = RunDir(cfg.output_dir)

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
        if cfg.resume:  # refuse a changed config before loading anything (beft/resume.py)
            self.resume_changes = resume.check(self.run_dir, cfg)
        model_cfg = load_model_config(cfg.model)
        self.arch = resolve_arch(cfg.arch, model_cfg)
        checks.check_arch(cfg, self.arch, model_cfg)
        self.task = task_for(
            cfg.task, self.arch, cfg.data
        )  # own data: every split read and checked here
        self.splits = self.task.load(
            cfg.data_dir, cfg.regime, cfg.seed, cfg.data.n_train, cfg.data.n_eval
        )
        self.micro = checks.micro_batch(cfg, dist.world_size(), len(self.splits.train))
        self._build_model()
        self.steps_per_epoch = len(self.splits.train) // cfg.batch_size
        total = cfg.epochs * self.steps_per_epoch if cfg.epochs else cfg.max_steps
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.head_lr = cfg.zo.head_lr if cfg.optim.kind == "zo" and cfg.zo.head_lr else cfg.lr
        warmup = cfg.optim.warmup_steps or int(cfg.optim.warmup_ratio * self.total_steps)
        self.lr_fn = lr_lambda(self.total_steps, warmup, cfg.optim.schedule)
        # the backend may replace parameters (FSDP2 shards them into DTensors): keep its handles
        if self.method.trains:
            self.params = self.backend.prepare(
                self.model, self.params, optimizer_builder(cfg, self.head_lr, self.lr_fn)
            )
        else:  # evaluation only: no optimizer
            checks.check_evaluates(cfg, self.backend)
            self.backend.model = self.model
        if self.selection is not None:
            self.backend.fill_initial(self.selection)
        self.step = steps.build(
            cfg,
            self.model,
            self.params,
            self.selection,
            self.backend,
            self.task,
            self.head_lr,
            self.lr_fn,
        )
        self.state = TrainState()
        if cfg.resume and (self.run_dir.last_checkpoint / "meta.json").is_file():
            self._resume()
        elif (
            cfg.resume and self.rank0
        ):  # no checkpoint yet: the run starts over, and so does its log
            self.run_dir.truncate_metrics(0, lines=0)
        if self.rank0:
            self._announce()
        dist.barrier()

    def _build_model(self) -> None:
        """The backend loads the base; the method selects (or reparametrises) what trains."""
        cfg, quant = self.cfg, None
        if cfg.quant != "none":
            from ..backends import quant as q

            quant = q.quantization_config(8 if cfg.quant == "8bit" else 4)
        num_labels = self.task.num_labels
        self.model, self.tokenizer, head = self.backend.load_model(
            cfg.model, self.arch, num_labels=num_labels, quantization_config=quant
        )
        self.method = methods.build(
            cfg.method, self.model, cfg, head, read_full=self.backend.full_state
        )
        self.selection, self.params, self.counts = (
            self.method.selection,
            self.method.params,
            self.method.trainable,
        )
        if self.method.model is not None:
            self.model = self.method.model
        if self.method.task_transform is not None:
            self.task = self.method.task_transform(self.task, self.splits)
        self.splits.notes.extend(self.method.notes)
        checks.check_fused_slices(cfg, self.selection, self.backend)
        checks.activation_checkpointing(cfg, self.model)

    def _resume(self) -> None:
        last = self.run_dir.last_checkpoint
        self.state = st = TrainState.from_dict(self.backend.load_checkpoint(last, self.params))
        if st.step_state:
            self.step.load_state_dict(st.step_state)
        if st.step > self.total_steps:
            raise TrainingError(
                f"resume=true: the checkpoint is at step {st.step}, past this "
                f"config's {self.total_steps} steps; raise max_steps or epochs"
            )
        st.resumes = [*(st.resumes or []), {"step": st.step, "changed": self.resume_changes}]
        if self.rank0:
            self.run_dir.truncate_metrics(st.step, resume.log_lines(last / "meta.json"))
            for k, (was, now) in self.resume_changes.items():
                print(f"note: resume changes {k}: {was} -> {now}", flush=True)
            print(
                f"resumed from step {st.step} (epoch {st.epoch}, batch {st.batch_in_epoch})",
                flush=True,
            )

    def _announce(self) -> None:
        cfg, c = self.cfg, self.counts
        atomic_write_text(self.run_dir.config, dump_config(cfg))
        self.trackers = tracking.Trackers(
            cfg.report_to,
            self.run_dir.path,
            cfg.to_dict(),
            resume_step=self.state.step if cfg.resume else None,
        )
        print(
            f"beft {__version__}: {cfg.model} ({self.arch}) task={cfg.task} method={cfg.method} "
            f"bias={cfg.bias} backend={self.backend.kind} world={dist.world_size()} | trainable "
            f"{c.trainable:,} (bias {c.bias:,} = {c.bias_per_mille:.4f} per mille, head "
            f"{c.head:,}) | train {len(self.splits.train)} eval {len(self.splits.eval)}",
            flush=True,
        )
        for note in self.splits.notes:
            print(f"note: {note}", flush=True)

    # ------------------------------------------------------------------------------ train
    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        return torch.randperm(len(self.splits.train), generator=g).tolist()

    def local_batches(self, global_idx: list[int]) -> list[list[dict]]:
        """This rank's micro-batches of one global batch (rank-contiguous shards)."""
        r, m, accum = dist.rank(), self.micro, self.cfg.optim.grad_accum
        mine = global_idx[r * m * accum : (r + 1) * m * accum]
        return [[self.splits.train[i] for i in mine[k * m : (k + 1) * m]] for k in range(accum)]

    def to_device(self, batch: dict) -> dict:
        dev = self.backend.device
        return {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _micro_batches(self, global_idx: list[int]):
        """This rank's collated micro-batches, counting their tokens as they go."""
        for micro in self.local_batches(global_idx):
            batch = self.to_device(
                self.task.collate(self.tokenizer, micro, self.cfg.data.max_length)
            )
            self._tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
            yield batch

    def train(self) -> None:
        cfg, st = self.cfg, self.state
        model = self.backend.model
        if not self.method.trains:  # zero-shot / ICL: one evaluation, no steps
            self.evaluate_epoch(0)
            return
        bar = None
        if self.rank0:
            self.bar = bar = progress(self.total_steps, "train", initial=st.step)
        if st.step == 0:
            self.step.before_training(self)
        t_log, n_log, self._tokens = time.perf_counter(), 0, 0
        t_start = time.perf_counter() - st.train_seconds
        while (
            st.step < self.total_steps or not st.final_evaluated()
        ):  # a kill may have cut the last evaluation
            epoch = st.epoch
            order = self.order(epoch)
            model.train()
            for b in range(st.batch_in_epoch, self.steps_per_epoch):
                if st.step >= self.total_steps:
                    break
                loss, grad_norm = self.step.run(
                    model,
                    self._micro_batches(order[b * cfg.batch_size : (b + 1) * cfg.batch_size]),
                    st.step,
                )
                if self.method.after_step is not None:
                    self.backend.after_step(self.method.after_step, self.selection)
                st.step += 1
                st.batch_in_epoch = b + 1
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
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
                if st.step % cfg.log_every == 0 or st.step == self.total_steps:
                    dt = time.perf_counter() - t_log
                    rec = {
                        "step": st.step,
                        "epoch": epoch + 1,
                        "loss": loss_value,
                        "lr": cfg.lr * self.lr_fn(st.step - 1),
                        "grad_norm": grad_norm,
                        "examples_per_s": n_log / dt,
                        "tokens_per_s": dist.mean(self._tokens) * dist.world_size() / dt,
                    }
                    if self.rank0:
                        self.log(rec)
                        bar.set_postfix(
                            loss=f"{loss_value:.4f}", ex_s=f"{rec['examples_per_s']:.1f}"
                        )
                    t_log, n_log, self._tokens = time.perf_counter(), 0, 0
                hooks.point("step", st.step)
                if stopping:
                    st.train_seconds = time.perf_counter() - t_start
                    self.save_checkpoint()
                    raise stop.Stopped(
                        f"stopped by {stop.signal_name() or 'a signal on another rank'} after "
                        f"step {st.step}; checkpoint written to {self.run_dir.last_checkpoint}; "
                        "rerun with resume=true to continue"
                    )
                if (
                    cfg.checkpoint.every_steps
                    and st.step % cfg.checkpoint.every_steps == 0
                    and st.batch_in_epoch < self.steps_per_epoch
                ):
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
                if (
                    bar is not None and not last
                ):  # the training bar's rate leaves out evaluation and checkpoints
                    bar.unpause()
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------------------ evaluate
    def evaluate(self) -> dict:
        """Every rank evaluates the whole split (ZeRO-3 and FSDP need all ranks in lockstep)."""
        model = self.backend.model
        model.eval()
        preds = []
        bs = self.cfg.data.eval_batch_size
        bar = progress(len(self.splits.eval), "eval", leave=False) if self.rank0 else None
        with torch.no_grad(), self.backend.autocast():
            for i in range(0, len(self.splits.eval), bs):
                ex = self.splits.eval[i : i + bs]
                batch = self.to_device(
                    self.task.collate(self.tokenizer, ex, self.cfg.data.max_length)
                )
                # ranks that shard the parameters run every forward together, however long each
                # generates
                kw = (
                    {"synced_gpus": True}
                    if self.task.generates and self.backend.shards_parameters
                    else {}
                )
                preds.extend(self.task.predict(model, batch, **kw))
                if bar is not None:
                    bar.update(len(ex))
        if bar is not None:
            bar.close()
        model.train()
        self.backend.release()
        return {k: float(v) for k, v in self.task.metrics(preds, self.splits.eval).items()}

    def evaluate_epoch(self, epoch: int) -> None:
        """epoch: numbered from 1 (the epoch the last step belongs to), as in checkpoints'
        meta.json;
        0 for a method that only evaluates."""
        st = self.state
        metrics = self.evaluate()
        main = metrics[self.task.main_metric]
        st.evals.append({"epoch": epoch, "step": st.step, **metrics})
        if st.best is None or main > st.best[self.task.main_metric]:
            st.best, st.best_epoch = metrics, epoch
            self.best_state = self.backend.full_state(self.params)
            if self.rank0 and self.selection is not None:
                self._save_adapter(self.run_dir.path / "adapter_best", self.best_state)
        if self.rank0:
            self.log({"step": st.step, "epoch": epoch, "eval": metrics})
            print(
                f"epoch {epoch} step {st.step}: "
                + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
                flush=True,
            )
        hooks.point("eval", st.step)

    def log(self, record: dict) -> None:  # rank 0: metrics.jsonl and the trackers (report_to)
        self.run_dir.log(record)
        self.trackers.log(record)

    def save_checkpoint(self) -> None:
        """Trainable parameters, optimizer, scheduler, RNG and data position; never the frozen
        base."""
        self.state.step_state = self.step.state_dict()
        checkpoint.save(self.run_dir, self.backend, self.params, self.state, self.cfg, self.rank0)

    def _save_adapter(self, directory: Path, state: dict) -> None:
        if self.method.adapter_state is not None:  # e.g. reparametrised: write b_0 + delta
            state = self.method.adapter_state(state)
        save_adapter(
            directory,
            self.selection,
            self.model,
            state=state,
            extra_meta={
                "task": self.cfg.task,
                "seed": self.cfg.seed,
                "method": self.cfg.method,
                **self.base_meta,
                **label_maps(self.task.labels),
            },
        )

    @functools.cached_property
    def base_meta(self) -> dict:
        """The base as the user named it, where it was found, its config.json's hash (read once)."""
        return base_identity(self.cfg.model)

    # ------------------------------------------------------------------------------ cleanup
    def cleanup(self) -> dict | None:
        st, cfg = self.state, self.cfg
        final_state = self.backend.full_state(self.params)
        shards = self.backend.shard_report()
        memory = memory_report(self.memory, self.setup_seconds)
        result = None
        if self.rank0:
            if self.selection is not None:
                self._save_adapter(self.run_dir.adapter, final_state)
            hooks.point("result")
            final = st.evals[-1] if st.evals else None
            warnings = health.loss_warnings(
                st.first_loss, [r["loss"] for r in self.run_dir.records() if "loss" in r]
            ) + health.baseline_warnings(self.task, self.splits.eval, final)
            result = result_record(
                cfg,
                st,
                task=self.task,
                splits=self.splits,
                arch=self.arch,
                counts=self.counts.as_dict(),
                backend=self.backend.kind,
                shards=shards,
                memory=memory,
                warnings=warnings,
            )
            atomic_write_json(self.run_dir.result, result)  # last: its presence means finished
            self.trackers.close()
            print(
                done_line(
                    result, self.run_dir.path, cfg.report_to, self.selection is not None, warnings
                ),
                flush=True,
            )
        dist.barrier()
        self.backend.cleanup()
        return result

    def run(self) -> dict | None:
        """setup, train, cleanup. If it fails (not a SIGTERM stop, which leaves a checkpoint to
        resume): a finished run it was replacing (overwrite=true) comes back, and a folder this
        run created is removed when the failure came before training began."""
        created = not self.run_dir.path.exists()
        started = False
        tune_allocator()
        self.memory, t0 = PeakMemory().start(), time.perf_counter()
        try:
            self.setup()
            self.setup_seconds = time.perf_counter() - t0
            started = True
            previous = stop.install()
            try:
                self.train()
            finally:
                stop.restore(previous)
                if getattr(self, "bar", None) is not None:  # an error then starts on its own line
                    self.bar.close()
            result = self.cleanup()
        except stop.Stopped:
            raise
        except BaseException:
            if dist.env_rank() == 0:
                if self.run_dir.restore_previous():
                    print(
                        "the run failed; the finished run it was replacing is back in"
                        f" {self.run_dir.path}",
                        file=sys.stderr,
                        flush=True,
                    )
                elif created and not started:
                    shutil.rmtree(self.run_dir.path, ignore_errors=True)
            raise
        if self.rank0:
            self.run_dir.drop_previous()
        return result
