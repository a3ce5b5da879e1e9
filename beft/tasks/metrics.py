"""Task metrics with scikit-learn / scipy, and SQuAD-normalised answer F1 / exact match.

scikit-learn and scipy are imported by the metrics that need them, not with the module: together
they cost a fresh process about 2 s of imports (pandas comes with scikit-learn), paid by every rank
of every run before it trains; accuracy, the metric of most tasks, is the fraction of equal pairs.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence


def accuracy(preds: Sequence, golds: Sequence) -> float:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold labels")
    if len(golds) == 0:
        raise ValueError("accuracy of no examples")
    return float(sum(bool(p == g) for p, g in zip(preds, golds, strict=True)) / len(golds))


def binary_f1(preds: Sequence[int], golds: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(golds, preds, pos_label=1, average="binary", zero_division=0))


def macro_f1(preds: Sequence[int], golds: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(golds, preds, average="macro", zero_division=0))


def mcc(preds: Sequence[int], golds: Sequence[int]) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(golds, preds))


def correlations(preds: Sequence[float], golds: Sequence[float]) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    return {
        "pearson": float(pearsonr(preds, golds)[0]),
        "spearman": float(spearmanr(preds, golds)[0]),
    }


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation and articles, squeeze whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return float(p == g)  # both empty -> 1, else 0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def answer_scores(preds: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean over questions of the max over gold answers: keys 'f1' and 'em'."""
    if not preds:
        return {"f1": 0.0, "em": 0.0}
    f1 = [max(token_f1(p, g) for g in gs) for p, gs in zip(preds, golds, strict=True)]
    em = [max(exact_match(p, g) for g in gs) for p, gs in zip(preds, golds, strict=True)]
    return {"f1": sum(f1) / len(f1), "em": sum(em) / len(em)}


METRICS = {
    "accuracy": lambda p, g: {"accuracy": accuracy(p, g)},
    "f1": lambda p, g: {"f1": binary_f1(p, g), "accuracy": accuracy(p, g)},
    "macro_f1": lambda p, g: {"macro_f1": macro_f1(p, g), "accuracy": accuracy(p, g)},
    "mcc": lambda p, g: {"mcc": mcc(p, g), "accuracy": accuracy(p, g)},
    "spearman": correlations,
}


def label_metrics(kind: str, preds: Sequence, golds: Sequence) -> dict[str, float]:
    """Metrics for predicted labels; `kind` is the task's main metric."""
    return METRICS[kind](list(preds), list(golds))
