"""Reparametrised bias updates (paper Table 4, appendix C.4-C.5) as small delta modules.

Each module holds the trainable tensors of one bias vector's update and computes the delta
(n,) added to the frozen pretrained bias b0 (the selected entries). Every delta is exactly zero at
initialisation (bit-identical outputs): a product with an all-zero factor, or a difference of two
identical computations. The vector is viewed as a matrix M of shape (r1, r2), r1 * r2 = n (see
shape.factor).

`compute(p)` is a pure function of the module's parameters `p` (by name) and its frozen buffers:
`forward()` calls it with the module's own parameters; the adapter export calls it with gathered
full copies (under ZeRO-3 / FSDP2 the module's own tensors are shards), without a module call, so
no backend hook fires on one rank only.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _kaiming(shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    # peft's LoRA A init: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1.0 / math.sqrt(shape[1])
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


class Delta(nn.Module):
    def compute(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        return self.compute(dict(self.named_parameters()))

    def _buf(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return getattr(self, name).to(device=like.device, dtype=like.dtype)


def lora_delta(A: torch.Tensor, B: torch.Tensor, scale: float) -> torch.Tensor:
    return (scale * (B @ A)).reshape(-1)  # (r1, r) @ (r, r2) -> (n,)


class LoRA(Delta):
    """s * (B A).flatten(), B (r1, r) zeros, A (r, r2) random: r (r1 + r2) trainable."""

    def __init__(
        self,
        b0: torch.Tensor,
        shape: tuple[int, int],
        rank: int,
        alpha: float,
        gen: torch.Generator,
    ):
        super().__init__()
        r1, r2 = shape
        self.shape, self.scale = shape, alpha / rank
        self.A = nn.Parameter(_kaiming((rank, r2), gen).to(b0))  # (r, r2)
        self.B = nn.Parameter(torch.zeros(r1, rank).to(b0))  # (r1, r)

    def compute(self, p):
        return lora_delta(p["A"], p["B"], self.scale)


class VeRA(Delta):
    """(diag(lb) B diag(d) A).flatten() with A (r, r2), B (r1, r) frozen random and shared by
    every bias of the same shape; lb (r1,) starts at zero, d (r,) at d_init: r1 + r trainable."""

    def __init__(self, b0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, d_init: float = 0.1):
        super().__init__()
        self.register_buffer("A", A, persistent=False)  # (r, r2), shared
        self.register_buffer("B", B, persistent=False)  # (r1, r), shared
        self.d = nn.Parameter(torch.full((A.shape[0],), d_init).to(b0))
        self.lb = nn.Parameter(torch.zeros(B.shape[0]).to(b0))

    def compute(self, p):
        d, lb = p["d"], p["lb"]
        return ((lb[:, None] * self._buf("B", lb)) @ (d[:, None] * self._buf("A", d))).reshape(-1)


class VeRA1d(Delta):
    """s * u: one trainable scalar s (zero at start) per bias vector along a frozen random
    unit-RMS direction u, shared by every bias of the same size."""

    def __init__(self, b0: torch.Tensor, u: torch.Tensor):
        super().__init__()
        self.register_buffer("u", u, persistent=False)  # (n,)
        self.s = nn.Parameter(
            torch.zeros(1, dtype=b0.dtype, device=b0.device)
        )  # (1,): ZeRO-3 cannot shard 0-d

    def compute(self, p):
        return p["s"] * self._buf("u", p["s"])


class DoRA(Delta):
    """Magnitude and direction: v = b0 + LoRA delta, effective = v * (m / |v|), m a trainable
    scalar starting at |b0| (so m / |v| is exactly 1 at start); delta = effective - b0.
    Degenerate rule: where |b0| = 0 (an added zero bias) there is no direction; the effective
    bias is m * v with m starting at 1."""

    def __init__(self, b0: torch.Tensor, shape, rank: int, alpha: float, gen: torch.Generator):
        super().__init__()
        r1, r2 = shape
        self.scale = alpha / rank
        self.A = nn.Parameter(_kaiming((rank, r2), gen).to(b0))
        self.B = nn.Parameter(torch.zeros(r1, rank).to(b0))
        self.register_buffer("b0", b0.detach().clone(), persistent=False)
        norm = b0.detach().norm()
        self.directional = bool(norm > 0)
        self.m = nn.Parameter(
            (
                norm.clone()
                if self.directional
                else torch.ones((), dtype=b0.dtype, device=b0.device)
            ).reshape(1)
        )  # (1,): ZeRO-3 cannot shard 0-d tensors

    def compute(self, p):
        b0 = self._buf("b0", p["A"])
        v = b0 + lora_delta(p["A"], p["B"], self.scale)
        eff = v * (p["m"] / v.norm()) if self.directional else p["m"] * v
        return eff - b0


class PiSSA(Delta):
    """Train the top-r singular components of M = b0 viewed as (r1, r2): M = U S V^T,
    A = U_r sqrt(S_r) (r1, r), B = sqrt(S_r) V_r^T (r, r2); delta = A B - A0 B0, i.e. the
    effective bias is the frozen residual M - A0 B0 plus the trained A B, and exactly b0 at start.
    Degenerate rule: |b0| = 0 has no principal components; A, B then start as in LoRA."""

    def __init__(self, b0: torch.Tensor, shape, rank: int, gen: torch.Generator):
        super().__init__()
        r1, r2 = shape
        M = b0.detach().float().reshape(r1, r2)  # (r1, r2)
        if M.norm() > 0:
            U, S, Vh = torch.linalg.svd(M, full_matrices=False)  # (r1, k) (k,) (k, r2)
            root = S[:rank].sqrt()
            A, B = U[:, :rank] * root, root[:, None] * Vh[:rank]  # (r1, r) (r, r2)
        else:
            A, B = torch.zeros(r1, rank), _kaiming((rank, r2), gen)
        self.A, self.B = nn.Parameter(A.to(b0)), nn.Parameter(B.to(b0))
        self.register_buffer("AB0", (self.A @ self.B).detach().clone(), persistent=False)

    def compute(self, p):
        return (p["A"] @ p["B"] - self._buf("AB0", p["A"])).reshape(-1)


class BiasDelta(nn.Module):
    """The update of one bias parameter, full size (out_features,): the inner delta on the
    selected entries (all, or a fused layer's q/k/v slice), zero elsewhere. Attached to the layer
    as `beft_reparam`; a forward hook adds it to the layer's output (y = x W^T + b0 + delta), so the
    layer, its frozen bias and its weight (8-bit included) are untouched."""

    def __init__(self, inner: Delta, b0_full: torch.Tensor, index: torch.Tensor | None):
        super().__init__()
        self.inner = inner
        self.register_buffer(
            "b0", b0_full.detach().clone(), persistent=False
        )  # (out,) the effective base
        self.register_buffer("index", index, persistent=False)

    def place(self, d: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return d
        return torch.zeros(self.b0.shape, dtype=d.dtype, device=d.device).index_put(
            (self.index.to(d.device),), d
        )

    def forward(self) -> torch.Tensor:
        return self.place(self.inner())

    def effective(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """b0 + delta from full copies `p` of the inner parameters (names as in `inner`)."""
        d = self.inner.compute(p)
        return self.b0.to(d) + self.place(d)


def add_delta_hook(module: nn.Module, args, out: torch.Tensor) -> torch.Tensor:
    return out + module.beft_reparam().to(out.dtype)
