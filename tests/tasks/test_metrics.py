import math
import subprocess
import sys

import pytest

from beft.tasks import get_task
from beft.tasks.metrics import answer_scores, label_metrics, normalize_answer, token_f1


def test_mcc_by_hand():
    # tp=2 tn=1 fp=1 fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    out = label_metrics("mcc", [1, 1, 0, 1, 0], [1, 1, 0, 0, 1])
    assert out["mcc"] == pytest.approx(1 / 6)
    assert out["accuracy"] == pytest.approx(3 / 5)


def test_accuracy_is_scikit_learn_s():
    import random

    from sklearn.metrics import accuracy_score

    from beft.tasks.metrics import accuracy

    rng = random.Random(0)
    for n in (1, 7, 100):
        golds = [rng.randrange(3) for _ in range(n)]
        preds = [rng.randrange(3) for _ in range(n)]
        assert accuracy(preds, golds) == pytest.approx(accuracy_score(golds, preds), abs=1e-15)
    assert accuracy(["a", "b"], ["a", "c"]) == 0.5
    import numpy as np
    import torch

    for got in (accuracy(np.array([1, 0]), np.array([1, 1])), accuracy(torch.tensor([1]), [1])):
        assert type(got) is float  # result.json and the trackers take it as it is
    for preds, golds in (([], []), ([1], [1, 0])):
        with pytest.raises(ValueError):
            accuracy(preds, golds)


def test_a_training_process_does_not_import_scikit_learn():
    """scikit-learn (with pandas) cost every rank of every run about 2 s of imports before it
    trained; the metrics that need it import it when they run."""
    code = (
        "import sys, beft.train, beft.commands.train, beft.tasks\n"
        "from beft.tasks.metrics import label_metrics\n"
        "label_metrics('accuracy', [1, 0], [1, 1])\n"
        "print(sorted(m for m in ('sklearn', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_macro_f1_by_hand():
    # class 0: p=1/2 r=1 f=2/3; class 1: p=1 r=1/2 f=2/3; class 2: p=r=f=1 -> mean 7/9
    out = label_metrics("macro_f1", [0, 0, 1, 2], [0, 1, 1, 2])
    assert out["macro_f1"] == pytest.approx(7 / 9)


def test_binary_f1_and_correlations():
    assert label_metrics("f1", [1, 0, 1, 1], [1, 0, 0, 1])["f1"] == pytest.approx(0.8)
    out = label_metrics("spearman", [1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0])
    assert out["spearman"] == pytest.approx(1.0)
    assert out["pearson"] < 1.0


def test_squad_normalisation_and_f1():
    assert normalize_answer("The  Grainger Town, area!") == "grainger town area"
    # pred tokens {grainger, town}; gold {grainger, town, area}: p=1 r=2/3 f=0.8
    assert token_f1("the Grainger Town", "Grainger Town area") == pytest.approx(0.8)
    assert token_f1("a", "the") == 1.0  # both normalise to empty
    out = answer_scores(["Denver Broncos", "no idea"], [["Broncos", "the Denver Broncos"], ["42"]])
    assert out["em"] == pytest.approx(0.5)  # max over golds gives the exact match
    assert out["f1"] == pytest.approx(0.5)


def test_task_metrics_include_main_metric():
    for arch, name in [
        ("encoder", "cola"),
        ("encoder", "cb"),
        ("encoder", "stsb"),
        ("decoder", "multirc"),
        ("decoder", "cb"),
    ]:
        task = get_task(name, arch=arch)
        preds = [0.5, 1.0, 2.5] if name == "stsb" else [0, 1, 1]
        examples = [{"label": x} for x in ([0.1, 2.0, 2.2] if name == "stsb" else [0, 1, 0])]
        out = task.metrics(preds, examples)
        assert task.main_metric in out and not math.isnan(out[task.main_metric])


def test_record_metrics_score_candidate_text():
    task = get_task("record", arch="decoder")
    ex = {"candidates": ["Obama", "the USA"], "answers": ["USA"], "label": 1}
    assert task.metrics([1], [ex]) == {"f1": 1.0, "em": 1.0}
    assert task.metrics([0], [ex])["f1"] == 0.0
