"""How far two runs of the same training may differ when only float32 rounding differs between
them: 2 ranks against 1 process, one launcher or backend against another, a resumed run against
an uninterrupted one, recomputed activations against kept ones. Every such comparison in the suite
goes through assert_agree; exact equality (== 0.0) stays for reruns of the very same arithmetic.

Derivation. Both runs take the same S optimizer steps on the same examples; what differs is the
order of float32 sums (which rank holds which examples and all-reduces its partial sum, kernel
blocking, each rank padding to its own longest sequence, the CPU's vector width, threads). Let d_s
be the largest difference of a trained value after step s. One step adds

  (a) the rounding of the stored value theta - u: one float32 rounding, <= EPS * max|theta|;
  (b) a different rounding of the step's gradient estimate, a sum of n terms (backpropagation:
      the tokens of the global batch). n float32 terms summed in another order differ relatively
      by ~ sqrt(n) * EPS for independent rounding errors (Higham & Mary, "A new approach to
      probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019; n * EPS at worst).
      AdamW's step lr * m / (sqrt(v) + eps) does not depend on the gradient's scale, so it moves
      by ~ lr * sqrt(n) * EPS. An estimator that magnifies the rounding passes it as `factor`:
      zeroth order, (L+ - L-) / (2 zo.eps) turns a rounding of the losses into one 1 / (2 zo.eps)
      times larger, with n the examples whose loss differences make the estimate.

A difference feeds the next steps almost unchanged (lr * curvature << 1 over a few dozen steps),
so differences add up at most linearly, and

  d_S <= tolerance = C * EPS * S * (max|theta| + factor * lr * sqrt(n)).

C = 16 = 4 * 4, fixed once for the whole suite, never per test: the largest of the P compared
values is ~ sqrt(2 ln P) <= 4 typical deviations (P up to a few thousand), and another 4 for
AdamW's normalisation, which magnifies the relative error of a component whose gradient is small,
and for later steps that start from different values. Measured on a 2-core CPU, 2 ranks against
1 process: first order 2e-8 .. 2e-7 after 8-16 steps (bounds 3e-6 .. 3e-5); the probed head of
a ZO run 2.03e-6 after 20 + 4 steps, as on issue 13's machine (bound 1.4e-5, the old literal 1e-6);
ZO biases 6e-6 .. 2.1e-5 after 16 steps (bounds 4.3e-4, 8.6e-4 forward differences), and 2.9e-4
after 4 steps beside that first-order head (bound 8.6e-4, see that test).

It must stay far below what a bug does: a wrong gradient or a wrong z moves a value by ~ lr in
one step (Adam's scale invariance hides a gradient that is merely scaled, e.g. averaged over the
wrong number of ranks: no tolerance catches that). assert_agree fails when the bound reaches
lr / TIGHT, so a call's numbers can never loosen it into uselessness: first-order bounds are
700-3000x below lr, zeroth-order ones, which magnify by 1 / (2 zo.eps) = 500, 10-25x.
"""

from __future__ import annotations

import math

import torch

EPS = torch.finfo(torch.float32).eps  # 2**-23: every compared run trains in float32
C = 16
TIGHT = 10  # the bound stays >= 10x below one step of lr


def max_diff(a, b) -> float:
    """Largest absolute difference between two {name: tensor} dicts with the same keys."""
    assert sorted(a) == sorted(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _magnitude(a) -> float:
    return max(v.float().abs().max().item() for v in a.values())


def tolerance(scale: float, *, steps: int, reduction: int, lr: float, factor: float = 1.0) -> float:
    """C * EPS * steps * (scale + factor * lr * sqrt(reduction)); see the module docstring.
    scale: the largest |value| compared; steps: optimizer steps whose arithmetic differs;
    reduction: terms in one step's gradient estimate (backpropagation: tokens of the global batch;
    ZO: examples); factor: the estimator's documented magnification of the rounding (1 for
    backpropagation, 1 / (2 zo.eps) for central differences)."""
    return C * EPS * steps * (scale + factor * lr * math.sqrt(reduction))


def assert_agree(
    a, b, *, steps: int, reduction: int, lr: float, factor: float = 1.0, what: str = ""
) -> float:
    """a and b ({name: tensor}, or two floats) agree within tolerance(); returns the difference.
    Fails as well when the bound is not TIGHT times below lr: it could not tell a bug apart."""
    if isinstance(a, dict):
        diff, scale = max_diff(a, b), max(_magnitude(a), _magnitude(b))
    else:
        diff, scale = abs(a - b), max(abs(a), abs(b))
    tol = tolerance(scale, steps=steps, reduction=reduction, lr=lr, factor=factor)
    assert tol <= lr / TIGHT, (
        f"{what}: the bound {tol:.3g} is not {TIGHT}x below lr={lr:g}: it could not "
        f"catch a wrong step ({steps} steps, n={reduction}, factor {factor:g})"
    )
    assert diff <= tol, (
        f"{what}: differ by {diff:.3g} > {tol:.3g} = {C} * eps * {steps} steps * "
        f"({scale:.3g} + {factor:g} * lr {lr:g} * sqrt({reduction}))"
    )
    return diff
