"""Warnings of a run that diverged, made its loss worse, or ends no better than a constant
prediction: in result.json "warnings" and in the final line (beft/health.py)."""

import pytest

from beft.health import baseline_warnings, loss_warnings
from beft.tasks import get_task
from test_kill_points import train
from train_helpers import result

LOSSES = [  # (first step's loss, logged losses) -> the warning's first word, or None
    ((0.69, [0.6, 0.5, 0.4, 0.3]), None),
    ((0.69, [0.6, 0.5, 0.7, 0.75]), "loss rose"),
    ((0.69, [0.6, 0.5, 0.4, 80.0]), "loss rose"),  # one bad batch: mean of the last two, 40 < 69
    ((0.69, [71.0, 456.0, 216.0, 3.5e7]), "diverged"),
    ((None, [0.69, 0.7, 3.5e7]), "diverged"),  # a checkpoint without the first loss
    ((0.69, []), None),
]


@pytest.mark.parametrize("args,want", LOSSES)
def test_loss_rules(args, want):
    got = loss_warnings(*args)
    assert [w.split(":")[0] for w in got] == ([want] if want else [])


def test_constant_prediction_baseline():
    task = get_task("sst2")
    examples = [{"label": y} for y in (1, 1, 1, 0)]
    assert baseline_warnings(task, examples, {"accuracy": 0.75}) == [
        "baseline: accuracy=0.7500 is no better than always predicting label 1 (0.7500); raise lr"
        " or train longer"
    ]
    assert baseline_warnings(task, examples, {"accuracy": 1.0}) == []
    assert (
        baseline_warnings(get_task("stsb"), [{"label": 0.5}, {"label": 2.0}], {"spearman": 0.0})
        == []
    )


def test_diverged_run_finishes_with_a_warning(tiny_dirs, need_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_dirs["bert"], out, lr=100, max_steps=4, epochs=1, **{"checkpoint.every_steps": 0})
    warnings = result(out)["warnings"]
    assert warnings[0].startswith("diverged: training loss 0.6"), warnings
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done: ") and f"| warning: {warnings[0]}" in last
