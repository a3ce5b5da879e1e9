"""Warnings about a finished run that learned nothing or went the wrong way (result.json
"warnings" and the final line; a warning, never a failure).

- diverged: the end of the training loss is over DIVERGED x its start. A loss that grows
  100-fold is no batch-to-batch noise (cross-entropy starts near log C, a few units) and no slow
  drift: the step size is too large (lr=1e6 takes MiniLM from 0.69 to 3.5e7).
- rose: the end above the start: the run made its training loss worse.
- baseline: the final evaluation's main metric is at or below what always predicting one label
  scores on the evaluation split (the majority class for accuracy): nothing beyond the prior.
The start is the loss of the first step (the model before any update; the first logged loss for
a checkpoint that did not keep it), the end the mean of the last WINDOW logged losses (fewer when
the log is short), so that one noisy batch at the end neither raises nor hides a warning.
"""

from __future__ import annotations

import warnings as pywarnings

DIVERGED = 100.0
WINDOW = 5


def loss_warnings(first: float | None, logged: list[float]) -> list[str]:
    """`first`: the first step's loss; `logged`: the logged training losses, in order."""
    if not logged:
        return []
    start = logged[0] if first is None else first
    k = min(WINDOW, max(1, len(logged) // 2))
    end = sum(logged[-k:]) / k
    what = (
        f"training loss {start:.4g} at step 1 -> {end:.4g} at the end (mean of the last {k} logged)"
    )
    if start > 0 and end > DIVERGED * start:
        return [f"diverged: {what}, over {DIVERGED:g}x its start; lower lr"]
    if end > start:
        return [f"loss rose: {what}; lower lr or check the data"]
    return []


def constant_baseline(task, examples: list[dict]) -> tuple[float, object] | None:
    """The best main metric of a constant prediction (one label for every example) and that
    label; None for tasks without integer labels (regression, generation, ReCoRD)."""
    labels = [ex.get("label") for ex in examples]
    if not examples or "answers" in examples[0] or not all(type(y) is int for y in labels):
        return None
    best = None
    with pywarnings.catch_warnings():  # sklearn: ill-defined precision of a constant prediction
        pywarnings.simplefilter("ignore")
        for label in sorted(set(labels)):
            score = float(task.metrics([label] * len(examples), examples)[task.main_metric])
            if best is None or score > best[0]:
                best = (score, label)
    return best


def baseline_warnings(task, examples: list[dict], final: dict | None) -> list[str]:
    if not final or task.main_metric not in final:
        return []
    found = constant_baseline(task, examples)
    if found is None:
        return []
    score, label = found
    value = final[task.main_metric]
    if value > score + 1e-12:
        return []
    return [
        f"baseline: {task.main_metric}={value:.4f} is no better than always predicting label"
        f" {label} ({score:.4f}); raise lr or train longer"
    ]
