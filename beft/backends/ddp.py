"""Plain data parallelism: every rank holds the whole (frozen) model, and the trained tensors'
gradients are averaged over ranks before each optimizer step.

What torch's DistributedDataParallel does, done by hand over the trainable tensors alone: one
all-reduce of their flattened gradients per optimizer step (bias vectors: kilobytes, so there
is nothing to overlap with the backward), no wrapper module (generation, hooks and the ZO path
see the model itself), and gradient accumulation needs no no_sync(). Rank 0's trained tensors
are broadcast first, as DistributedDataParallel does when it wraps a module."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as tdist

from . import dist
from .local import LocalBackend, rank_file, rng_state, set_rng_state


class DDPBackend(LocalBackend):
    kind = "ddp"
    title = "DDP"
    evaluates_alone = False

    def prepare(self, model, params: dict[str, torch.Tensor], build_optim) -> dict:
        params = super().prepare(model, params, build_optim)
        if dist.world_size() > 1:
            with torch.no_grad():
                for p in params.values():
                    tdist.broadcast(p.data, src=0)
        return params

    def step(self, params: list[torch.Tensor]) -> float:
        with_grad = [p for p in params if p.grad is not None]
        if dist.world_size() > 1 and with_grad:
            flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
            tdist.all_reduce(flat)
            flat /= dist.world_size()
            for p, g in zip(with_grad, flat.split([p.numel() for p in with_grad])):
                p.grad.copy_(g.view_as(p.grad))
        return super().step(params)

    # -- state: the one-process checkpoint, written by rank 0, plus each rank's RNG
    # ------------------
    def save_checkpoint(self, directory: Path, params, extra: dict) -> None:
        if dist.rank() == 0:
            super().save_checkpoint(
                directory, params, {**extra, "ddp_world_size": dist.world_size()}
            )
        torch.save(rng_state(), rank_file(directory, "rng"))

    def load_checkpoint(self, directory: Path, params) -> dict:
        extra = super().load_checkpoint(directory, params)
        written = extra.pop("ddp_world_size", 1)
        if written != dist.world_size():
            raise RuntimeError(
                f"checkpoint {directory} was written by {written} rank(s); resume with the "
                f"same number (now {dist.world_size()})"
            )
        set_rng_state(torch.load(rank_file(directory, "rng"), weights_only=True))
        return extra
