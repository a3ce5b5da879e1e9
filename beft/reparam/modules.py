"""Reparametrised bias updates (paper Table 4, appendix C.4-C.5) as torch parametrizations.

Each module maps the frozen pretrained bias b (the selected entries, a vector of n) to the
effective bias. Every one is exactly b at initialisation (bit-identical outputs): the update is
either a product with an all-zero factor, or a difference of two identical computations.
The vector is viewed as a matrix M of shape (r1, r2), r1 * r2 = n (see shape.factor).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _kaiming(shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    # peft's LoRA A init: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1.0 / math.sqrt(shape[1])
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


class LoRA(nn.Module):
    """b + s * (B A).flatten(), B (r1, r) zeros, A (r, r2) random: r (r1 + r2) trainable."""

    def __init__(self, b0: torch.Tensor, shape: tuple[int, int], rank: int, alpha: float,
                 gen: torch.Generator):
        super().__init__()
        r1, r2 = shape
        self.shape, self.scale = shape, alpha / rank
        self.A = nn.Parameter(_kaiming((rank, r2), gen).to(b0))      # (r, r2)
        self.B = nn.Parameter(torch.zeros(r1, rank).to(b0))           # (r1, r)

    def delta(self) -> torch.Tensor:
        return (self.scale * (self.B @ self.A)).reshape(-1)           # (r1, r2) -> (n,)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return b + self.delta()


class VeRA(nn.Module):
    """b + (diag(lb) B diag(d) A).flatten() with A (r, r2), B (r1, r) frozen random and shared by
    every bias of the same shape; lb (r1,) starts at zero, d (r,) at d_init: r1 + r trainable."""

    def __init__(self, b0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, d_init: float = 0.1):
        super().__init__()
        self.register_buffer("A", A, persistent=False)                # (r, r2), shared
        self.register_buffer("B", B, persistent=False)                # (r1, r), shared
        self.d = nn.Parameter(torch.full((A.shape[0],), d_init).to(b0))
        self.lb = nn.Parameter(torch.zeros(B.shape[0]).to(b0))

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        m = (self.lb[:, None] * self.B) @ (self.d[:, None] * self.A)  # (r1, r2)
        return b + m.reshape(-1)


class VeRA1d(nn.Module):
    """b + s * u: one trainable scalar s (zero at start) per bias vector along a frozen random
    unit-RMS direction u, shared by every bias of the same size."""

    def __init__(self, b0: torch.Tensor, u: torch.Tensor):
        super().__init__()
        self.register_buffer("u", u, persistent=False)                # (n,)
        self.s = nn.Parameter(torch.zeros((), dtype=b0.dtype, device=b0.device))

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return b + self.s * self.u


class DoRA(nn.Module):
    """Magnitude and direction: v = b + LoRA delta, effective = v * (m / |v|), m a trainable
    scalar starting at |b0| (so m / |v| is exactly 1 at start). Degenerate rule: where |b0| = 0
    (an added zero bias) there is no direction; the effective bias is m * v with m starting at 1."""

    def __init__(self, b0: torch.Tensor, shape, rank: int, alpha: float, gen: torch.Generator):
        super().__init__()
        self.lora = LoRA(b0, shape, rank, alpha, gen)
        norm = b0.detach().norm()
        self.directional = bool(norm > 0)
        self.m = nn.Parameter(norm.clone() if self.directional else torch.ones((), dtype=b0.dtype, device=b0.device))

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        v = self.lora(b)
        return v * (self.m / v.norm()) if self.directional else self.m * v


class PiSSA(nn.Module):
    """Train the top-r singular components of M = b0 viewed as (r1, r2): M = U S V^T,
    A = U_r sqrt(S_r) (r1, r), B = sqrt(S_r) V_r^T (r, r2); effective = b + (A B - A0 B0), i.e.
    the frozen residual M - A0 B0 plus the trained A B, and exactly b at start.
    Degenerate rule: |b0| = 0 has no principal components; A, B then start as in LoRA."""

    def __init__(self, b0: torch.Tensor, shape, rank: int, gen: torch.Generator):
        super().__init__()
        r1, r2 = shape
        M = b0.detach().float().reshape(r1, r2)                        # (r1, r2)
        if M.norm() > 0:
            U, S, Vh = torch.linalg.svd(M, full_matrices=False)       # (r1, k) (k,) (k, r2)
            root = S[:rank].sqrt()
            A, B = U[:, :rank] * root, root[:, None] * Vh[:rank]       # (r1, r) (r, r2)
        else:
            A, B = torch.zeros(r1, rank), _kaiming((rank, r2), gen)
        self.A, self.B = nn.Parameter(A.to(b0)), nn.Parameter(B.to(b0))
        self.register_buffer("AB0", (self.A @ self.B).detach().clone(), persistent=False)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return b + (self.A @ self.B - self.AB0).reshape(-1)


class OnSlice(nn.Module):
    """Apply a reparametrisation to some entries of a bias only (a fused layer's q/k/v slice)."""

    def __init__(self, inner: nn.Module, index: torch.Tensor | None):
        super().__init__()
        self.inner = inner
        self.register_buffer("index", index, persistent=False)

    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return self.inner(bias)
        out = bias.clone()
        out[self.index] = self.inner(bias[self.index])
        return out
