"""Zeroth-order (SPSA / MeZO-style) updates of a small parameter set: forward passes only.

Per step and perturbation i, z_i ~ N(0, I) is regenerated from a seed (never stored):
    g_i = (L(theta + eps z_i) - L(theta - eps z_i)) / (2 eps)     # projected gradient
    ghat = mean_i g_i z_i                                          # gradient estimate
or, with forward differences (difference="forward"), g_i = (L(theta + eps z_i) - L(theta)) / eps
with L(theta) measured once per step and shared by the n perturbations: n + 1 forward passes
instead of 2n (the same estimate up to O(eps) in the curvature, half the passes for large n),
then SGD (theta -= lr ghat) or Adam on ghat. The values before the step are kept (the trained
set is tiny: biases), so perturb-and-restore is exact, not an add/subtract round trip.
Every rank draws the same z (seeded generator on the CPU) and uses the all-rank mean loss.
`step_examples` draws one z per example instead (see there).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import torch

# full_access(params) yields (full tensors, sync): the caller edits the full tensors in place and
# calls sync() to make the model see them (FSDP2: write each rank's shard back).
FullAccess = Callable[[list[torch.Tensor]], contextlib.AbstractContextManager]


@contextlib.contextmanager
def direct(params: list[torch.Tensor]) -> Iterator[tuple[list[torch.Tensor], Callable[[], None]]]:
    """Single process: the parameters are the full tensors; nothing to write back."""
    yield params, lambda: None


def perturbation(shapes: list[torch.Size], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float32) for s in shapes]


def _expand(basis: torch.Tensor, x: torch.Tensor, shape) -> torch.Tensor:
    """Coordinates x in a basis -> the full tensor: P x (matrix basis), or x at the indices."""
    if basis.dim() == 2:
        return (basis @ x.to(basis)).view(shape)
    out = torch.zeros(int(torch.Size(shape).numel()), dtype=x.dtype, device=x.device)
    out[basis.to(x.device)] = x
    return out.view(shape)


def _coords(basis: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A full tensor -> its coordinates in a basis: P^T t, or the entries at the indices."""
    flat = t.reshape(-1)
    return basis.T @ flat.to(basis) if basis.dim() == 2 else flat[basis.to(flat.device)]


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a bijective 64-bit mix."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class ZOOptimizer:
    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float,
        eps: float = 1e-3,
        n: int = 1,
        seed: int = 0,
        update: str = "sgd",
        betas=(0.9, 0.999),
        adam_eps: float = 1e-8,
        weight_decay: float = 0.0,
        full_access: FullAccess = direct,
        bases: list[torch.Tensor | None] | None = None,
        difference: str = "central",
    ):
        if update not in ("sgd", "adam"):
            raise ValueError(f"zo update must be sgd or adam, got {update!r}")
        if difference not in ("central", "forward"):
            raise ValueError(f"zo difference must be central or forward, got {difference!r}")
        self.central = difference == "central"
        if eps <= 0 or n < 1:
            raise ValueError("zo needs eps > 0 and n >= 1")
        self.params, self.lr, self.eps, self.n, self.seed = params, lr, eps, n, seed
        self.update, self.betas, self.adam_eps, self.weight_decay = (
            update,
            betas,
            adam_eps,
            weight_decay,
        )
        self.full_access = full_access
        # per tensor: None, (numel, k) orthonormal columns that z is drawn in, or an index
        self.bases = bases
        self.t = 0
        self.m: list[torch.Tensor] | None = None
        self.v: list[torch.Tensor] | None = None
        self.master: list[torch.Tensor] | None = None  # fp32 values of 16-bit parameters

    def draw(self, shapes: list[torch.Size], seed: int) -> list[torch.Tensor]:
        """z for one perturbation: N(0, I), or N(0, P P^T) = P xi for a tensor with a basis P
        (a (numel, k) matrix, or a 1-D index: the only entries that move, e.g. the selected
        slice of a fused qkv bias)."""
        if self.bases is None:
            return perturbation(shapes, seed)
        xi = perturbation(
            [
                s if b is None else (b.shape[-1] if b.dim() == 2 else b.numel(),)
                for b, s in zip(self.bases, shapes)
            ],
            seed,
        )
        return [x if b is None else _expand(b, x, s) for b, x, s in zip(self.bases, xi, shapes)]

    def z_seed(self, step: int, i: int) -> int:
        """The seed of draw i of a step. The linear form is unique while i < 1009 and step < 991
        (then distinct seeds never share a draw either); beyond that a 64-bit mix keeps draws of
        large batches x zo.n, and of long runs, from repeating earlier steps' or other seeds'."""
        if 0 <= i < 1_009 and 0 <= step < 991:
            return (self.seed * 1_000_003 + step * 1_009 + i) % (2**63 - 1)
        return _mix(_mix(_mix(self.seed) ^ step) ^ i) % (2**63 - 1)

    @torch.no_grad()
    def step(self, loss_fn: Callable[[], float], step: int, lr: float | None = None) -> dict:
        """One ZO step; loss_fn() must return the all-rank mean loss as a float."""
        lr = self.lr if lr is None else lr
        with self.full_access(self.params) as (full, sync):
            theta0 = self._start(full)
            shapes = [p.shape for p in full]
            projected, losses = [], []
            base = None if self.central else loss_fn()  # forward differences: L(theta), once
            for i in range(self.n):
                z = self.draw(shapes, self.z_seed(step, i))
                for p, p0, zi in zip(full, theta0, z):
                    p.copy_(p0 + self.eps * zi.to(p0))
                sync()
                plus = loss_fn()
                if self.central:
                    for p, p0, zi in zip(full, theta0, z):
                        p.copy_(p0 - self.eps * zi.to(p0))
                    sync()
                    minus = loss_fn()
                for p, p0 in zip(full, theta0):
                    p.copy_(p0)
                sync()
                if self.central:
                    if not (math.isfinite(plus) and math.isfinite(minus)):
                        return {"loss": float("nan"), "projected_grad": float("nan")}
                    projected.append((plus - minus) / (2 * self.eps))
                    losses.append((plus + minus) / 2)
                else:
                    if not (math.isfinite(plus) and math.isfinite(base)):
                        return {"loss": float("nan"), "projected_grad": float("nan")}
                    projected.append((plus - base) / self.eps)
                    losses.append(base)
            ghat = [torch.zeros_like(p0, dtype=torch.float32) for p0 in theta0]
            for i, g in enumerate(projected):
                for acc, zi in zip(ghat, self.draw(shapes, self.z_seed(step, i))):
                    acc.add_(zi.to(acc.device), alpha=g / self.n)
            self._apply(full, theta0, ghat, lr)
            sync()
        return {
            "loss": sum(losses) / len(losses),
            "projected_grad": sum(projected) / len(projected),
        }

    @torch.no_grad()
    def step_examples(
        self,
        losses_fn: Callable[[list[torch.Tensor]], torch.Tensor],
        step: int,
        examples: list[int],
        total: int,
        lr: float | None = None,
        reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] = lambda ts: ts,
    ) -> dict:
        """One ZO step with an independent perturbation per example (zo.perturb=example).

        Example e (its index in the global batch; `examples` are this rank's) draws its own z_e and
        alone sees theta + eps z_e: losses_fn(offsets) runs the local batch with offsets[k][j]
        added to tensor k for local example j, and returns the per-example losses. Then
            ghat = mean_e (L_e(theta + eps z_e) - L_e(theta - eps z_e)) / (2 eps) z_e,
        an unbiased estimate of the batch gradient (as MeZO's shared z) whose direction noise is
        averaged over the batch's perturbations, for the same two forward passes. The parameters
        are not edited during the passes; losses_fn(None) runs the batch unperturbed (forward
        differences: L_e(theta) once, then (L_e(theta + eps z_e) - L_e(theta)) / eps per draw).
        `reduce` sums tensors over ranks; `total` = global batch."""
        lr = self.lr if lr is None else lr
        shapes = [getattr(p, "ds_shape", p.shape) for p in self.params]  # ZeRO-3 holds a partition
        ghat = [torch.zeros(s, dtype=torch.float32) for s in shapes]
        stats = torch.zeros(
            3, dtype=torch.float64
        )  # sums of the losses, projected grads; non-finite count
        base = None if self.central else losses_fn(None).double().cpu()
        for i in range(self.n):
            per = [self.draw(shapes, self.z_seed(step, e * self.n + i)) for e in examples]
            z = [
                torch.stack([pe[k] for pe in per]) for k in range(len(shapes))
            ]  # (B_local, *shape)
            plus = losses_fn([self.eps * zk for zk in z]).double().cpu()
            if self.central:
                minus = losses_fn([-self.eps * zk for zk in z]).double().cpu()
                g, loss = (plus - minus) / (2 * self.eps), (plus + minus) / 2
            else:
                g, loss = (plus - base) / self.eps, base
            stats += torch.stack([loss.sum(), g.sum(), (~torch.isfinite(g)).sum().double()])
            for acc, zk in zip(ghat, z):
                acc.add_(torch.einsum("b,b...->...", torch.nan_to_num(g).float(), zk))
        *ghat, stats = reduce([*ghat, stats.float()])
        if stats[2] > 0:
            return {"loss": float("nan"), "projected_grad": float("nan")}
        count = total * self.n
        with self.full_access(self.params) as (full, sync):
            self._apply(full, self._start(full), [g / count for g in ghat], lr)
            sync()
        return {"loss": stats[0].item() / count, "projected_grad": stats[1].item() / count}

    def _start(self, full: list[torch.Tensor]) -> list[torch.Tensor]:
        """The values before the step. 16-bit parameters (DeepSpeed bf16 / fp16) would round away
        updates smaller than half their resolution (2e-3 at |b| = 0.5 in bf16), so their fp32
        values are kept here and updated instead; the model sees them rounded."""
        if all(p.dtype == torch.float32 for p in full):
            return [p.detach().clone() for p in full]
        if self.master is None:
            self.master = [p.detach().float().clone() for p in full]
        self.master = [m.to(p.device) for m, p in zip(self.master, full)]
        return [m.clone() for m in self.master]

    def _apply(
        self,
        full: list[torch.Tensor],
        theta0: list[torch.Tensor],
        ghat: list[torch.Tensor],
        lr: float,
    ) -> None:
        """theta0 - lr (direction + weight decay); for a tensor with a basis both stay in its span
        (Adam runs on the basis coordinates; the decay acts on theta0's part in the span)."""
        bases = self.bases or [None] * len(full)
        if self.update == "sgd":
            direction = ghat
        elif self.bases is None:
            direction = self._adam(ghat)
        else:
            coords = [g if b is None else _coords(b, g) for g, b in zip(ghat, bases)]
            direction = [
                d if b is None else _expand(b, d, g.shape)
                for d, b, g in zip(self._adam(coords), bases, ghat)
            ]
        news = []
        for p, p0, d, b in zip(full, theta0, direction, bases):
            x0 = p0.float()
            decay = (
                x0
                if b is None or not self.weight_decay
                else _expand(b, _coords(b, x0.cpu()), x0.shape).to(x0.device)
            )
            news.append(x0 - lr * (self.weight_decay * decay + d.to(p0.device)))
            p.copy_(news[-1].to(p.dtype))
        if self.master is not None:
            self.master = news

    def _adam(self, ghat: list[torch.Tensor]) -> list[torch.Tensor]:
        b1, b2 = self.betas
        if self.m is None:
            self.m = [torch.zeros_like(g) for g in ghat]
            self.v = [torch.zeros_like(g) for g in ghat]
        self.t += 1
        out = []
        if any(m.device != g.device for m, g in zip(self.m, ghat)):  # state restored on the CPU
            self.m = [m.to(g.device) for m, g in zip(self.m, ghat)]
            self.v = [v.to(g.device) for v, g in zip(self.v, ghat)]
        for g, m, v in zip(ghat, self.m, self.v):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            mh, vh = m / (1 - b1**self.t), v / (1 - b2**self.t)
            out.append(mh / (vh.sqrt() + self.adam_eps))
        return out

    def state_dict(self) -> dict:
        return {"t": self.t, "m": self.m, "v": self.v, "master": self.master}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.m, self.v = state["t"], state["m"], state["v"]
        self.master = state.get("master")
