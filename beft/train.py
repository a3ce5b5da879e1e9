"""The one training loop: setup / train / cleanup, for every backend (local, DeepSpeed, FSDP2).

    from beft.config import load_config
    from beft.train import Trainer
    Trainer(load_config(overrides=["task=sst2", "bias=v"])).run()
"""
from __future__ import annotations

import functools
import math
import os
import random
import signal
import sys
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .backends import dist
from .bias.adapter import save_adapter
from . import faults, health, methods, quiet, resume, stop, tracking
from .config import TrainConfig, dump_config
from .memory import PeakMemory, tune_allocator
from .models import base_identity, is_encoder, load_config as load_model_config, resolve_arch
from .outputs import RunDir, atomic_write_json, atomic_write_text
from .tasks import label_maps, task_for


class TrainingError(ValueError):   # a one-line error for the user (beft.cli), exit 2
    pass


# Fault injection for tests: BEFT_TERM_AFTER_STEP=N sends SIGTERM to the last rank only (the others
# must follow); kills: beft/faults.py.
_TERM_AFTER_STEP = int(os.environ.get("BEFT_TERM_AFTER_STEP", "0"))


def done_line(result: dict, folder: Path, report_to: str, adapter: bool, warnings: list[str] = ()) -> str:
    """The run's last line: the main metric (final and best), the output folder, where to look next,
    then any warning (e.g. the loss diverged)."""
    m = result["main_metric"]
    final, best = (result["final"] or {}).get(m, float("nan")), (result["best"] or {}).get(m, float("nan"))
    nxt = [f"{folder}/result.json", f"{folder}/metrics.jsonl"]
    if "tensorboard" in report_to:
        nxt.append(f"tensorboard --logdir {folder}/tensorboard")
    if adapter:
        nxt.append(f"beft export {folder} peft={folder}_peft")
    return (f"done: {m}={final:.4f} (best {best:.4f} at epoch {result['best_epoch']}), "
            f"{result['trainable']['trainable']:,} trained parameters -> {folder}; next: {'; '.join(nxt)}"
            + "".join(f" | warning: {w}" for w in warnings))


def progress(total: int, desc: str, **kw):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=1.0, **kw)


def make_backend(cfg: TrainConfig):
    from .backends.choose import choose
    choose(cfg)   # the launcher's environment (torchrun, accelerate) may pick ddp / fsdp / deepspeed
    cfg.validate()
    if cfg.backend == "ddp":
        from .backends.ddp import DDPBackend
        return DDPBackend(cfg)
    if cfg.backend == "deepspeed":
        from .backends.deepspeed import DeepSpeedBackend
        return DeepSpeedBackend(cfg)
    if cfg.backend == "fsdp":
        from .backends.fsdp import FSDPBackend
        return FSDPBackend(cfg)
    from .backends.local import LocalBackend
    return LocalBackend(cfg)


def lr_lambda(total: int, warmup: int, schedule: str):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


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
        tracking.check(cfg.report_to)   # a missing tracker package: before anything loads
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

        if cfg.bias == "auto":   # the ranking run's choice; config.yaml records the resolved target
            from .rank import auto_target
            cfg.bias = auto_target(cfg.rank_from)
        if cfg.resume:   # refuse a changed config before loading anything (beft/resume.py)
            self.resume_changes = resume.check(self.run_dir, cfg)
        model_cfg = load_model_config(cfg.model)
        self.arch = resolve_arch(cfg.arch, model_cfg)
        if self.arch == "decoder" and is_encoder(model_cfg):
            raise TrainingError(f"arch=decoder: {cfg.model} is an encoder ({model_cfg.model_type}) with no causal LM "
                                "head to score with; drop arch (auto) or use a decoder model")
        self.task = task_for(cfg.task, self.arch, cfg.data)   # own data: every split read and checked here
        self.splits = self.task.load(cfg.data_dir, cfg.regime, cfg.seed, cfg.data.n_train, cfg.data.n_eval)
        world, accum = dist.world_size(), cfg.optim.grad_accum
        if cfg.batch_size % (world * accum):
            raise TrainingError(f"batch_size={cfg.batch_size} is not divisible by world size {world} x "
                                f"optim.grad_accum={accum}")
        if len(self.splits.train) < cfg.batch_size:
            raise TrainingError(f"{len(self.splits.train)} training examples < batch_size={cfg.batch_size}")
        self.micro = cfg.batch_size // (world * accum)

        quant = None
        if cfg.quant != "none":
            from .backends import quant as q
            quant = q.quantization_config(8 if cfg.quant == "8bit" else 4)
        num_labels = getattr(self.task, "num_labels", None)
        self.model, self.tokenizer, head = self.backend.load_model(cfg.model, self.arch, num_labels=num_labels,
                                                                   quantization_config=quant)
        self.method = methods.build(cfg.method, self.model, cfg, head, read_full=self.backend.full_state)
        self.selection, self.params, self.counts = self.method.selection, self.method.params, self.method.counts
        if self.method.model is not None:
            self.model = self.method.model
        if self.method.task_transform is not None:
            self.task = self.method.task_transform(self.task, self.splits)
        self.splits.notes.extend(self.method.notes)
        self.sharded = sharded = self.backend.name == "fsdp" or (self.backend.name == "deepspeed" and getattr(self.backend, "stage", 0) == 3)
        if self.selection is not None and self.selection.frozen_slices and sharded and cfg.optim.kind != "zo":
            raise TrainingError(f"bias={cfg.bias} selects part of a fused qkv bias ({self.selection.family}); "
                                f"{'FSDP2' if self.backend.name == 'fsdp' else 'ZeRO-3'} shards it and its other entries "
                                "cannot be kept frozen there: use DeepSpeed ZeRO-2, one process, optim.kind=zo, or a "
                                "target covering the whole layer (bias=qkv / all)")

        if cfg.activation_checkpointing:
            if not hasattr(self.model, "gradient_checkpointing_enable"):
                raise TrainingError(f"activation_checkpointing=true: {type(self.model).__name__} does not support it")
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

        self.steps_per_epoch = len(self.splits.train) // cfg.batch_size
        total = cfg.epochs * self.steps_per_epoch if cfg.epochs else cfg.max_steps
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.head_lr = cfg.zo.head_lr if cfg.optim.kind == "zo" and cfg.zo.head_lr else cfg.lr
        warmup = cfg.optim.warmup_steps or int(cfg.optim.warmup_ratio * self.total_steps)
        def build_optim(params: list[torch.Tensor]):   # under ZO it steps the new head only
            opt = torch.optim.AdamW(params, lr=self.head_lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                                    weight_decay=cfg.optim.weight_decay)
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.total_steps, warmup,
                                                                         cfg.optim.schedule))
        # the backend may replace parameters (FSDP2 shards them into DTensors): keep its handles
        if self.method.trains:
            self.params = self.backend.prepare(self.model, self.params, build_optim)
        elif self.backend.name == "local":   # evaluation only: no optimizer
            self.backend.model = self.model
        else:
            raise TrainingError(f"method={cfg.method} only evaluates; run it on one process")
        if self.selection is not None and hasattr(self.backend, "fill_initial"):
            self.backend.fill_initial(self.selection)
        self.lr_fn = lr_lambda(self.total_steps, warmup, cfg.optim.schedule)
        self.zo = self._build_zo() if cfg.optim.kind == "zo" else None

        self.state = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best": None, "best_epoch": None,
                      "evals": [], "train_seconds": 0.0}
        if cfg.resume and (self.run_dir.last_checkpoint / "meta.json").is_file():
            self.state = self.backend.load_checkpoint(self.run_dir.last_checkpoint, self.params)
            if self.zo is not None and self.state.get("zo"):
                self.zo.load_state_dict(self.state["zo"])
                if self.gathered_head is not None and "head" in self.state["zo"]:
                    self.gathered_head.load_state_dict(self.state["zo"]["head"])
            if self.state["step"] > self.total_steps:
                raise TrainingError(f"resume=true: the checkpoint is at step {self.state['step']}, past this "
                                    f"config's {self.total_steps} steps; raise max_steps or epochs")
            self.state.setdefault("resumes", []).append({"step": self.state["step"], "changed": self.resume_changes})
            if self.rank0:
                self.run_dir.truncate_metrics(self.state["step"],
                                              resume.log_lines(self.run_dir.last_checkpoint / "meta.json"))
                for k, (was, now) in self.resume_changes.items():
                    print(f"note: resume changes {k}: {was} -> {now}", flush=True)
                print(f"resumed from step {self.state['step']} (epoch {self.state['epoch']}, "
                      f"batch {self.state['batch_in_epoch']})", flush=True)
        elif cfg.resume and self.rank0:   # no checkpoint yet: the run starts over, and so does its log
            self.run_dir.truncate_metrics(0, lines=0)
        if self.rank0:
            atomic_write_text(self.run_dir.config, dump_config(cfg))
            self.trackers = tracking.Trackers(cfg.report_to, self.run_dir.path, cfg.to_dict(),
                                              resume_step=self.state["step"] if cfg.resume else None)
            c = self.counts
            print(f"beft {__version__}: {cfg.model} ({self.arch}) task={cfg.task} method={cfg.method} "
                  f"bias={cfg.bias} backend={self.backend.name} world={dist.world_size()} | trainable "
                  f"{c['trainable']:,} (bias {c['bias']:,} = {c['bias_per_mille']:.4f} per mille, head "
                  f"{c['head']:,}) | train {len(self.splits.train)} eval {len(self.splits.eval)}", flush=True)
            for note in self.splits.notes:
                print(f"note: {note}", flush=True)
        dist.barrier()

    def _build_zo(self):
        """Forward-only training of the selected biases (or their reparametrisation); a new task
        head either trains by backpropagation through the head alone on gathered copies
        (zo.head=first_order, beft/zo/head.py, every backend) or stays frozen."""
        from .zo.estimator import ZOOptimizer
        cfg = self.cfg
        head = set(self.selection.head) if self.selection is not None else set()
        head_names = [n for n in self.params if n in head]
        biases = [n for n in self.params if n not in head]   # the biases, or their reparametrisation's tensors
        self.zo_head = head_names if cfg.zo.head == "first_order" else []
        self.zo_biases = biases
        self.zo_sites = self._example_sites() if cfg.zo.perturb == "example" else []
        if cfg.zo.probe:
            if self.selection is None or not self.selection.head:
                raise TrainingError("zo.probe=true fits a new task head, and this run has none (decoder tasks "
                                    "score with the LM head); drop zo.probe")
        self.gathered_head = None
        if self.zo_head or cfg.zo.probe:   # the new head trains (or is probed) first-order on gathered copies
            from .zo.probe import head_module, head_root
            from .zo.head import GatheredHead
            try:
                root = head_root(head_names)
            except ValueError as e:   # e.g. DeBERTa-v2: a new pooler and classifier
                raise TrainingError(f"{e}; use zo.head=freeze (and no zo.probe) for this model") from None
            self.gathered_head = GatheredHead(head_module(self.model, head_names), root,
                                              {n: self.params[n] for n in head_names}, self.backend, cfg,
                                              self.head_lr, self.lr_fn)
        bases = None
        if cfg.zo.subspace:
            from .zo.subspace import value_bases
            try:
                found = value_bases(self.model, biases, cfg.zo.subspace, self.backend.full_state, cfg.bias_patterns)
            except ValueError as e:
                raise TrainingError(str(e)) from None
            bases = [found[n] for n in biases]
        elif self.selection is not None:
            # fused qkv biases (GPT-NeoX, Phi-3): only the selected slice is perturbed and updated
            # (first-order masks the gradient; ZO draws z over those entries alone, on every backend)
            sliced = {s.param_name: s.index.cpu() for s in self.selection.sites if s.partial}
            if any(n in sliced for n in biases):
                bases = [sliced.get(n) for n in biases]
        return ZOOptimizer([self.params[n] for n in biases], lr=cfg.lr, eps=cfg.zo.eps, n=cfg.zo.n, seed=cfg.seed,
                           update=cfg.zo.update, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay,
                           full_access=self.backend.full_access, bases=bases, difference=cfg.zo.difference)

    def zo_step(self, model, batch: dict) -> tuple[float, float]:
        """One ZO step on the biases (two no-grad forwards per perturbation, or one each plus a
        shared unperturbed one with zo.difference=forward; eval mode so that all see the same
        network), then the optional first-order step of the head. The head's step reuses the first
        ZO forward: its input (features at the +eps point, eps-close to the current ones; with
        forward differences the current ones exactly) is recorded there, so the head costs no
        extra pass through the model."""
        cfg, st = self.cfg, self.state
        feats: list[torch.Tensor] = []
        hook = None
        if self.zo_head:
            hook = self.gathered_head.module.register_forward_hook(
                lambda m, args, out: feats.append(args[0].detach()) if not feats else None)

        def loss_fn() -> float:
            with self.backend.autocast():
                return dist.mean(float(self.task.loss(model, batch)))
        lr = cfg.lr * self.lr_fn(st["step"])
        model.eval()
        try:
            if cfg.zo.perturb == "example":
                local = int(batch["labels"].shape[0])
                out = self.zo.step_examples(self.example_losses_fn(model, batch), st["step"],
                                            list(range(dist.rank() * local, (dist.rank() + 1) * local)),
                                            cfg.batch_size, lr, reduce=dist.sum_tensors)
            else:
                out = self.zo.step(loss_fn, st["step"], lr)
        finally:
            if hook is not None:
                hook.remove()
            self.backend.release()
        model.train()
        if self.zo_head and feats:
            with self.backend.autocast():
                self.gathered_head.step(feats[0], batch["labels"], self.task.loss_from_logits)
        return out["loss"], abs(out["projected_grad"])

    def _example_sites(self) -> list[tuple[nn.Module, list[int], object]]:
        """zo.perturb=example: (layer, indices into zo_biases, its BiasDelta or None) per layer whose
        output a trained tensor shifts: a layer's own bias, or the tensors of its bias reparametrisation."""
        from .reparam.apply import PREFIX
        sites: dict[str, list] = {}
        for i, n in enumerate(self.zo_biases):
            if f".{PREFIX}.inner." in n:
                layer = n.split(f".{PREFIX}.")[0]
                sites.setdefault(layer, [self.model.get_submodule(layer), [], self.model.get_submodule(f"{layer}.{PREFIX}")])
            elif n.endswith(".bias"):
                layer = n.rsplit(".", 1)[0]
                sites.setdefault(layer, [self.model.get_submodule(layer), [], None])
            else:
                raise TrainingError(f"zo.perturb=example: {n} is neither a layer's bias nor a bias "
                                    "reparametrisation's tensor; use zo.perturb=batch")
            sites[layer][1].append(i)
        return [tuple(v) for v in sites.values()]

    def example_losses_fn(self, model, batch: dict):
        """zo.perturb=example: offsets (per trained tensor, per example) -> per-example losses. Each
        example's rows see their own change of the layer's bias, added to the layer's output: the
        offset itself for a bias (the same as a bias of b + offset on those rows), or
        delta(p + offset) - delta(p) for a reparametrised bias."""
        from .tasks.scoring import row_examples
        rows = row_examples(batch)
        names = self.zo_biases
        full = None
        if any(bd is not None for _, _, bd in self.zo_sites):
            full = self.backend.full_state({n: self.params[n] for n in names})   # gathered copies (ZeRO-3, FSDP2)

        def shift(idx: list[int], bd, offsets: list[torch.Tensor]) -> torch.Tensor:   # (B, out_features)
            if bd is None:
                return offsets[idx[0]]
            keys = [names[i].split(".inner.", 1)[1] for i in idx]
            p = {k: full[names[i]].float() for k, i in zip(keys, idx)}
            base = bd.place(bd.inner.compute(p))
            return torch.stack([bd.place(bd.inner.compute({k: p[k] + offsets[i][e].float() for k, i in zip(keys, idx)}))
                                for e in range(offsets[idx[0]].shape[0])]) - base

        def hook_for(off: torch.Tensor):
            def hook(module, args, out):
                o = off[rows.to(off.device)].to(device=out.device, dtype=out.dtype)
                return out + o.view(o.shape[0], *([1] * (out.dim() - 2)), o.shape[-1])
            return hook

        def losses(offsets: list[torch.Tensor] | None) -> torch.Tensor:   # None: unperturbed
            hooks = [] if offsets is None else [layer.register_forward_hook(hook_for(shift(idx, bd, offsets)))
                                                for layer, idx, bd in self.zo_sites]
            try:
                with self.backend.autocast():
                    return self.task.example_losses(model, batch).float()
            finally:
                for h in hooks:
                    h.remove()
        return losses

    def probe_head(self) -> None:
        """zo.probe: fit the new head on frozen features before the first ZO step. Each rank
        records the head inputs of its share of the training set (equal shares, so every rank
        runs the same number of forwards; up to world - 1 examples left out)."""
        from .zo.probe import head_inputs
        cfg, world = self.cfg, dist.world_size()
        n = len(self.splits.train) // world * world
        mine = list(range(n))[dist.rank()::world]
        bs = cfg.data.eval_batch_size
        batches = (self.to_device(self.task.collate(self.tokenizer, [self.splits.train[i] for i in mine[j:j + bs]],
                                                    cfg.data.max_length)) for j in range(0, len(mine), bs))
        t = time.perf_counter()
        try:
            with self.backend.autocast():
                xs, ys = head_inputs(self.backend.model, self.gathered_head.module, batches, self.task.logits)
        finally:
            self.backend.release()
        report = self.gathered_head.fit(xs, ys, self.task.loss_from_logits, cfg.zo.probe_steps, self.head_lr, n)
        report["seconds"] = time.perf_counter() - t
        self.state["probe"] = report
        if self.rank0:
            self.log({"step": 0, "probe": report})
            print(f"probe: head fitted on {report['examples']} examples' features in {report['seconds']:.1f}s "
                  f"(loss {report['loss_before']:.4f} -> {report['loss_after']:.4f})", flush=True)

    # ------------------------------------------------------------------------------ train
    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        return torch.randperm(len(self.splits.train), generator=g).tolist()

    def local_batches(self, global_idx: list[int]) -> list[list[dict]]:
        """This rank's micro-batches of one global batch (rank-contiguous shards)."""
        r, m, accum = dist.rank(), self.micro, self.cfg.optim.grad_accum
        mine = global_idx[r * m * accum:(r + 1) * m * accum]
        return [[self.splits.train[i] for i in mine[k * m:(k + 1) * m]] for k in range(accum)]

    def to_device(self, batch: dict) -> dict:
        dev = self.backend.device
        return {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}

    def train(self) -> None:
        cfg, st = self.cfg, self.state
        model = self.backend.model
        if not self.method.trains:   # zero-shot / ICL: one evaluation, no steps
            self.evaluate_epoch(0)
            return
        params = list(self.params.values())
        bar = None
        if self.rank0:
            self.bar = bar = progress(self.total_steps, "train", initial=st["step"])
        if self.zo is not None and cfg.zo.probe and st["step"] == 0:
            self.probe_head()
        t_log, n_log, tok_log = time.perf_counter(), 0, 0
        t_start = time.perf_counter() - st["train_seconds"]
        while st["step"] < self.total_steps or not self._final_evaluated():   # a kill may have cut the last evaluation
            epoch = st["epoch"]
            order = self.order(epoch)
            model.train()
            for b in range(st["batch_in_epoch"], self.steps_per_epoch):
                if st["step"] >= self.total_steps:
                    break
                losses = []
                for micro in self.local_batches(order[b * cfg.batch_size:(b + 1) * cfg.batch_size]):
                    batch = self.to_device(self.task.collate(self.tokenizer, micro, cfg.data.max_length))
                    tok_log += int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
                    if self.zo is not None:
                        zo_loss, grad_norm = self.zo_step(model, batch)
                        losses.append(zo_loss)
                        continue
                    with self.backend.autocast():
                        loss = self.task.loss(model, batch)
                    self.backend.backward(loss)
                    losses.append(loss.detach().float().item())
                if self.zo is None:
                    grad_norm = self.backend.step(params)
                if self.method.after_step is not None:
                    self.backend.after_step(self.method.after_step, self.selection)
                st["step"] += 1
                st["batch_in_epoch"] = b + 1
                if _TERM_AFTER_STEP and st["step"] == _TERM_AFTER_STEP and dist.rank() == dist.world_size() - 1:
                    os.kill(os.getpid(), signal.SIGTERM)
                loss_value, stopping = dist.mean_and_any(sum(losses) / len(losses), stop.requested())
                if not math.isfinite(loss_value):
                    raise TrainingError(f"loss is {loss_value} at step {st['step']} (epoch {epoch}); "
                                        "lower lr, check the data, or use precision=fp32")
                if st["step"] == 1:   # where the loss started (beft/health.py)
                    st["first_loss"] = loss_value
                n_log += cfg.batch_size
                if self.rank0:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
                if st["step"] % cfg.log_every == 0 or st["step"] == self.total_steps:
                    dt = time.perf_counter() - t_log
                    rec = {"step": st["step"], "epoch": epoch + 1, "loss": loss_value,
                           "lr": cfg.lr * self.lr_fn(st["step"] - 1), "grad_norm": grad_norm,
                           "examples_per_s": n_log / dt, "tokens_per_s": dist.mean(tok_log) * dist.world_size() / dt}
                    if self.rank0:
                        self.log(rec)
                        bar.set_postfix(loss=f"{loss_value:.4f}", ex_s=f"{rec['examples_per_s']:.1f}")
                    t_log, n_log, tok_log = time.perf_counter(), 0, 0
                faults.point("step", st["step"])   # fault injection for the kill + resume tests
                if stopping:
                    st["train_seconds"] = time.perf_counter() - t_start
                    self.save_checkpoint()
                    raise stop.Stopped(f"stopped by {stop.signal_name() or 'a signal on another rank'} after "
                                       f"step {st['step']}; checkpoint written to {self.run_dir.last_checkpoint}; "
                                       "rerun with resume=true to continue")
                if cfg.checkpoint.every_steps and st["step"] % cfg.checkpoint.every_steps == 0 \
                        and st["batch_in_epoch"] < self.steps_per_epoch:
                    st["train_seconds"] = time.perf_counter() - t_start
                    self.save_checkpoint()
            if st["batch_in_epoch"] >= self.steps_per_epoch or st["step"] >= self.total_steps:
                last = st["step"] >= self.total_steps
                if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                    self.evaluate_epoch(epoch + 1)
                if st["batch_in_epoch"] >= self.steps_per_epoch:
                    st["epoch"], st["batch_in_epoch"] = epoch + 1, 0
                st["train_seconds"] = time.perf_counter() - t_start
                self.save_checkpoint()
                if bar is not None and not last:   # the training bar's rate leaves out evaluation and checkpoints
                    bar.unpause()
        if bar is not None:
            bar.close()

    def _final_evaluated(self) -> bool:
        evals = self.state["evals"]
        return bool(evals) and evals[-1]["step"] == self.state["step"]

    def evaluate(self) -> dict:
        """Every rank evaluates the whole split (ZeRO-3 and FSDP need all ranks in lockstep)."""
        model = self.backend.model
        model.eval()
        preds = []
        bs = self.cfg.data.eval_batch_size
        bar = progress(len(self.splits.eval), "eval", leave=False) if self.rank0 else None
        with torch.no_grad(), self.backend.autocast():
            for i in range(0, len(self.splits.eval), bs):
                ex = self.splits.eval[i:i + bs]
                batch = self.to_device(self.task.collate(self.tokenizer, ex, self.cfg.data.max_length))
                # ranks that shard the parameters run every forward together, however long each generates
                kw = {"synced_gpus": True} if self.task.generates and self.sharded else {}
                preds.extend(self.task.predict(model, batch, **kw))
                if bar is not None:
                    bar.update(len(ex))
        if bar is not None:
            bar.close()
        model.train()
        self.backend.release()
        return {k: float(v) for k, v in self.task.metrics(preds, self.splits.eval).items()}

    def evaluate_epoch(self, epoch: int) -> None:
        """epoch: numbered from 1 (the epoch the last step belongs to), as in checkpoints' meta.json;
        0 for a method that only evaluates."""
        st = self.state
        metrics = self.evaluate()
        main = metrics[self.task.main_metric]
        st["evals"].append({"epoch": epoch, "step": st["step"], **metrics})
        if st["best"] is None or main > st["best"][self.task.main_metric]:
            st["best"], st["best_epoch"] = metrics, epoch
            self.best_state = self.backend.full_state(self.params)
            if self.rank0 and self.selection is not None:
                self._save_adapter(self.run_dir.path / "adapter_best", self.best_state)
        if self.rank0:
            self.log({"step": st["step"], "epoch": epoch, "eval": metrics})
            print(f"epoch {epoch} step {st['step']}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
                  flush=True)
        faults.point("eval", st["step"])

    def log(self, record: dict) -> None:   # rank 0: metrics.jsonl and the trackers (report_to)
        self.run_dir.log(record)
        self.trackers.log(record)

    def save_checkpoint(self) -> None:
        """Trainable parameters, optimizer, scheduler, RNG and data position; never the frozen base."""
        final = self.run_dir.last_checkpoint
        tmp = final.with_name("last.tmp")
        if self.rank0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        if self.zo is not None:
            self.state["zo"] = self.zo.state_dict()
            if self.gathered_head is not None:
                self.state["zo"]["head"] = self.gathered_head.state_dict()
        self.backend.save_checkpoint(tmp, self.params, dict(self.state))
        dist.barrier()
        if self.rank0:   # the config that trained it (beft/resume.py) and the log lines it has seen
            atomic_write_text(tmp / "config.yaml", dump_config(self.cfg))
            st = self.state   # epoch: the one its last step belongs to, numbered from 1 (as in result.json)
            atomic_write_json(tmp / "meta.json", {"step": st["step"], "epoch": st["epoch"] + (st["batch_in_epoch"] > 0),
                                                  "metrics_lines": self.run_dir.metrics_lines()})
            faults.point("checkpoint", self.state["step"])
            self.run_dir.commit_checkpoint(tmp)
        dist.barrier()

    def _save_adapter(self, directory: Path, state: dict) -> None:
        if self.method.adapter_state is not None:   # e.g. reparametrised: write b_0 + delta
            state = self.method.adapter_state(state)
        save_adapter(directory, self.selection, self.model, state=state,
                     extra_meta={"task": self.cfg.task, "seed": self.cfg.seed, "method": self.cfg.method,
                                 **self.base_meta, **label_maps(self.task.labels)})

    @functools.cached_property
    def base_meta(self) -> dict:
        """The base as the user named it, where it was found, its config.json's hash (read once)."""
        return base_identity(self.cfg.model)

    # ------------------------------------------------------------------------------ cleanup
    def cleanup(self) -> dict | None:
        st, cfg = self.state, self.cfg
        final_state = self.backend.full_state(self.params)
        shards = self.backend.shard_report()
        memory = self._memory_report()
        result = None
        if self.rank0:
            if self.selection is not None:
                self._save_adapter(self.run_dir.adapter, final_state)
            faults.point("result")
            final = st["evals"][-1] if st["evals"] else None
            warnings = health.loss_warnings(st.get("first_loss"), [r["loss"] for r in self.run_dir.records() if "loss" in r]) + \
                health.baseline_warnings(self.task, self.splits.eval, final)
            result = {"status": "finished", "final": st["evals"][-1] if st["evals"] else None,
                      "best": st["best"], "best_epoch": st["best_epoch"], "main_metric": self.task.main_metric,
                      "trainable": self.counts, "steps": st["step"], "wall_time_s": round(st["train_seconds"], 2),
                      "world_size": dist.world_size(), "backend": self.backend.name, "sharding_rank0": shards, "memory": memory, "model": cfg.model,
                      "task": cfg.task, "arch": self.arch, "method": cfg.method, "bias": cfg.bias, "seed": cfg.seed,
                      "n_train": len(self.splits.train), "n_eval": len(self.splits.eval),
                      "notes": self.splits.notes, "beft_version": __version__,
                      **({"probe": st["probe"]} if st.get("probe") else {}),
                      "resumes": st.get("resumes", []), "warnings": warnings}
            atomic_write_json(self.run_dir.result, result)   # last: its presence means finished
            self.trackers.close()
            print(done_line(result, self.run_dir.path, cfg.report_to, self.selection is not None, warnings), flush=True)
        dist.barrier()
        self.backend.cleanup()
        return result

    def _memory_report(self) -> dict:
        """Per rank, in GB: peak anonymous memory (sampled every 0.2 s), the kernel's resident high-water
        mark (mapped checkpoint pages included), anonymous memory when the run began (imports done);
        and the setup (loading) time of rank 0."""
        anon, hwm = self.memory.peak()
        self.memory.stop()
        world, rank = dist.world_size(), dist.rank()
        keys = ("peak_rss_anon_gb", "vm_hwm_gb", "start_rss_anon_gb", "start_rss_gb")
        slots = torch.zeros(len(keys), world, dtype=torch.float64)
        slots[:, rank] = torch.tensor([anon, hwm, self.memory.start_anon, self.memory.start_rss],
                                      dtype=torch.float64) / 1e9
        slots = dist.sum_tensors([slots])[0]
        return {**{k: [round(float(x), 3) for x in row] for k, row in zip(keys, slots)},
                "setup_s": round(self.setup_seconds, 2)}

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
                if getattr(self, "bar", None) is not None:   # an error then starts on its own line
                    self.bar.close()
            result = self.cleanup()
        except stop.Stopped:
            raise
        except BaseException:
            if dist.env_rank() == 0:
                if self.run_dir.restore_previous():
                    print(f"the run failed; the finished run it was replacing is back in {self.run_dir.path}",
                          file=sys.stderr, flush=True)
                elif created and not started:
                    shutil.rmtree(self.run_dir.path, ignore_errors=True)
            raise
        if self.rank0:
            self.run_dir.drop_previous()
        return result
