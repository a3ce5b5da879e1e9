"""Which matrix a bias vector is reshaped into before a low-rank update."""

from __future__ import annotations

import math


def factor(n: int, spec: str = "auto") -> tuple[int, int]:
    """(r1, r2) with r1 * r2 = n: the given "R1xR2" when it fits n, else the closest-to-square
    factorisation, r1 <= r2 (384 -> 16 x 24, 192 -> 12 x 16, a prime p -> 1 x p)."""
    if spec != "auto":
        r1, r2 = (int(x) for x in spec.lower().split("x"))
        if r1 * r2 == n:
            return r1, r2
    r1 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return r1, n // r1
