"""A new task head trained first-order beside forward-only (ZO) biases, on every backend.

Under FSDP2 and ZeRO-3 the head's tensors are shards (DTensors, or empty ZeRO partitions fetched
by module hooks), so the head module cannot be called on its own outside the model's forward.
Every rank therefore keeps a full copy of the head tensors (gathered once) and an AdamW over them,
runs the head module on those copies with its hooks set aside (torch.func.functional_call),
averages the gradient of its local examples over ranks (one all-reduce), takes the same step as
every other rank, and writes the copies back through the backend's full_access. One process is
the same code with nothing to gather. The probe (zo.probe=true) fits the same copies, full-batch,
on the head inputs recorded over each rank's share of the training set.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..backends import dist


@contextlib.contextmanager
def _hooks_set_aside(module: nn.Module):
    saved = [(m, dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in module.modules()]
    for m, _, _ in saved:
        m._forward_pre_hooks.clear()
        m._forward_hooks.clear()
    try:
        yield
    finally:
        for m, pre, post in saved:
            m._forward_pre_hooks.update(pre)
            m._forward_hooks.update(post)


class GatheredHead:
    def __init__(
        self,
        module: nn.Module,
        root: str,
        params: dict[str, torch.Tensor],
        backend,
        cfg,
        lr: float,
        lr_fn,
    ):
        self.module, self.backend, self.cfg = module, backend, cfg
        self.names = list(params)
        self.targets = [params[n] for n in self.names]
        self.keys = [n[len(root) + 1 :] for n in self.names]  # names inside the head module
        self.copies = [
            t.to(backend.device).requires_grad_() for t in self._read()
        ]  # beside the features
        o = cfg.optim
        self.opt = torch.optim.AdamW(
            self.copies, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_fn)

    def _read(self) -> list[torch.Tensor]:
        full = self.backend.full_state(dict(zip(self.names, self.targets)))
        return [full[n].detach().float() for n in self.names]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with _hooks_set_aside(self.module):
            return torch.func.functional_call(
                self.module, dict(zip(self.keys, self.copies)), (x.float(),)
            )

    def _mean_grad(self, loss: torch.Tensor, weight: float) -> None:
        """Set .grad to the all-rank sum of weight * d loss (weight: this rank's share)."""
        grads = torch.autograd.grad(loss * weight, self.copies)
        for c, g in zip(self.copies, dist.sum_tensors(list(grads))):
            c.grad = g.to(c.device)

    def write(self) -> None:
        with torch.no_grad(), self.backend.full_access(self.targets) as (full, sync):
            for f, c in zip(full, self.copies):
                f.copy_(c.detach().to(device=f.device, dtype=f.dtype))
            sync()

    def step(self, x: torch.Tensor, labels: torch.Tensor, loss_fn) -> None:
        """One AdamW step on this rank's examples' head inputs x (the mean over ranks'
        gradients)."""
        self._mean_grad(loss_fn(self(x), labels), 1.0 / dist.world_size())
        clip = self.cfg.optim.grad_clip
        torch.nn.utils.clip_grad_norm_(self.copies, clip if clip > 0 else math.inf)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.write()

    def fit(
        self,
        xs: list[torch.Tensor],
        ys: list[torch.Tensor],
        loss_fn,
        steps: int,
        lr: float,
        total: int,
    ) -> dict:
        """The probe: `steps` full-batch AdamW steps on the cached inputs of all ranks' examples
        (xs, ys: this rank's, in chunks; total: all ranks' count), the head in eval mode (no
        dropout).
        """
        opt = torch.optim.AdamW(self.copies, lr=lr, weight_decay=0.0)
        was = self.module.training
        self.module.eval()
        local = sum(int(y.shape[0]) for y in ys)
        share = local / total

        def loss() -> torch.Tensor:  # the mean over this rank's examples
            return sum(loss_fn(self(x), y) * (y.shape[0] / local) for x, y in zip(xs, ys))

        losses = []
        with torch.enable_grad():
            for _ in range(steps):
                value = loss()
                losses.append(value.detach() * share)
                self._mean_grad(value, share)
                opt.step()
                opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                losses.append(loss() * share)
        self.module.train(was)
        first, final = dist.sum_tensors([losses[0], losses[-1]])
        self.write()
        return {
            "loss_before": float(first),
            "loss_after": float(final),
            "steps": steps,
            "examples": total,
        }

    def state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """After a resume: re-read the (restored) head tensors, then the optimizer state."""
        with torch.no_grad():
            for c, t in zip(self.copies, self._read()):
                c.copy_(t)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
