"""tests/tolerance.py: the bound of a "two runs agree" comparison covers the rounding another
machine showed (issue 13) and stays far too narrow for a bug, for the numbers the suite uses."""

import pytest
import torch

from tolerance import TIGHT, assert_agree, tolerance

# the suite's comparisons: steps, reduction, lr, factor, largest |value|
# (tests/train/train_helpers.py:
# TOKENS = 8 x 32 for backpropagation, BATCH = 8 examples and ZO_FACTOR = 500 for zeroth order)
CALLS = {
    "first order, 2 ranks vs 1 process": (16, 256, 1e-2, 1, 0.1),
    "first order, reparametrised biases": (16, 256, 5e-2, 1, 0.2),
    "probed + first-order head": (20 + 4, 256, 1e-2, 1, 0.15),
    "ZO central differences": (16, 8, 1e-2, 500, 0.06),
    "ZO forward differences": (16, 8, 1e-2, 1000, 0.06),
    "ZO beside a first-order head": (4, 8, 1e-2, 500 * 8, 0.03),
}


def test_the_rounding_issue_13_saw_passes_and_the_old_literal_did_not():
    """test_encoder_head_first_order_and_probe_on_two_ranks: the classifier head (largest |value|
    0.142) of 2 ranks and of 1 process differed by 2.03e-6 after 20 probe + 4 steps (bound 1e-6)."""
    one = {"classifier.weight": torch.linspace(-0.142, 0.142, 128).reshape(2, 64)}
    two = {"classifier.weight": one["classifier.weight"] + 2.03e-6}
    assert tolerance(0.142, steps=24, reduction=256, lr=1e-2) > 5 * 2.03e-6 > 5 * 1e-6
    assert assert_agree(one, two, steps=24, reduction=256, lr=1e-2) == pytest.approx(
        2.03e-6, rel=1e-2
    )


@pytest.mark.parametrize("steps,reduction,lr,factor,scale", CALLS.values(), ids=CALLS.keys())
def test_a_wrong_step_fails(steps, reduction, lr, factor, scale):
    """A wrong gradient or z moves a value by ~ lr in one step: far outside the bound (orders of
    magnitude for backpropagation, 10x at least for zeroth order)."""
    tol = tolerance(scale, steps=steps, reduction=reduction, lr=lr, factor=factor)
    assert tol <= lr / TIGHT and (factor > 1 or tol <= lr / 500)
    one = {"bias": torch.linspace(-scale, scale, 64)}
    assert_agree(
        one, {"bias": one["bias"] + tol / 2}, steps=steps, reduction=reduction, lr=lr, factor=factor
    )
    for moved in (lr, lr / 2, 2 * tol):
        wrong = one["bias"].clone()
        wrong[7] += moved
        with pytest.raises(AssertionError, match="differ by"):
            assert_agree(
                one, {"bias": wrong}, steps=steps, reduction=reduction, lr=lr, factor=factor
            )


def test_a_bound_too_loose_to_catch_a_bug_is_refused():
    one = {"bias": torch.zeros(4)}
    with pytest.raises(AssertionError, match="could not catch a wrong step"):
        assert_agree(one, one, steps=400, reduction=256, lr=1e-2, factor=500)
    assert assert_agree(0.6, 0.6 + 1e-7, steps=20, reduction=256, lr=1e-2) == pytest.approx(
        1e-7, rel=1e-3
    )
