"""The loop's typed state: where training stands, what it has measured, and the step's own state.

It converts itself to and from the dict the backends' save_checkpoint / load_checkpoint write as
`extra` (the on-disk format is unchanged: old checkpoints resume; keys it does not know ride along).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

_OPTIONAL = {"first_loss": "first_loss", "probe": "probe", "resumes": "resumes", "step_state": "zo"}


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches of the current epoch done
    step: int = 0  # optimizer steps done
    best: dict | None = None  # the best evaluation's metrics
    best_epoch: int | None = None
    evals: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    first_loss: float | None = None  # the loss of step 1 (beft/health.py)
    probe: dict | None = None  # zo.probe's report
    resumes: list[dict] | None = None
    step_state: dict | None = (
        None  # the Step's state_dict() (ZO: estimator and head), key "zo" on disk
    )
    other: dict = field(default_factory=dict)  # keys of a checkpoint this class does not name

    def to_dict(self) -> dict:
        d = {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "evals": self.evals,
            "train_seconds": self.train_seconds,
        }
        d.update(
            {
                key: getattr(self, attr)
                for attr, key in _OPTIONAL.items()
                if getattr(self, attr) is not None
            }
        )
        return {**self.other, **d}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        names = {f.name for f in dataclasses.fields(cls)} - {"other", *_OPTIONAL}
        keys = {key: attr for attr, key in _OPTIONAL.items()}
        known = {k: v for k, v in d.items() if k in names}
        known.update({keys[k]: v for k, v in d.items() if k in keys})
        return cls(**known, other={k: v for k, v in d.items() if k not in names and k not in keys})

    def record_eval(self, epoch: int, metrics: dict, main: str) -> bool:
        """Add an evaluation; True when it is the new best by `main` (higher is better; NaN, e.g.
        a correlation of constant predictions, never beats a number, and a number beats NaN)."""
        self.evals.append({"epoch": epoch, "step": self.step, **metrics})
        new, old = metrics[main], None if self.best is None else self.best[main]
        if old is not None and (math.isnan(new) or (not math.isnan(old) and new <= old)):
            return False
        self.best, self.best_epoch = metrics, epoch
        return True

    def final_evaluated(self) -> bool:
        """The last evaluation is of the current step (a kill may have cut it)."""
        return bool(self.evals) and self.evals[-1]["step"] == self.step

    @property
    def checkpoint_epoch(self) -> int:
        """The epoch the last step belongs to, numbered from 1 (as in result.json and meta.json)."""
        return self.epoch + (self.batch_in_epoch > 0)
