"""Own data's examples, read once (custom.py), and the seeded train / eval draw from them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from beft.tasks.base import Splits, TaskDataError
from beft.tasks.decoder import ChoiceTask
from beft.tasks.encoder import EncoderTask
from beft.tasks.splits import draw_disjoint, sample


@dataclass(frozen=True)
class OwnRows:
    """The train split's examples and the eval split's (None: hold `fraction` of train out)."""

    name: str
    train: list[dict] = field(repr=False)
    train_from: str
    eval: list[dict] | None = field(repr=False)
    eval_from: str
    fraction: float
    notes: tuple[str, ...] = ()

    def splits(self, seed: int, n_train: int | None, n_eval: int | None) -> Splits:
        """All rows unless data.n_train / data.n_eval cap them (the regime's sizes are the paper's
        tasks')."""
        rng = random.Random(seed)
        notes = [
            *self.notes,
            f"{self.name}: own data, all rows unless data.n_train / data.n_eval cap them",
        ]
        if self.eval is not None:
            train, evals = sample(self.train, n_train, rng), sample(self.eval, n_eval, rng)
            notes.append(
                f"{self.name}: {len(train)} train from {self.train_from}, {len(evals)} eval from "
                f"{self.eval_from}, seed {seed}"
            )
            return Splits(train, evals, notes)
        total = len(self.train)
        want = n_eval or max(1, round(self.fraction * total))
        train, evals = draw_disjoint(
            self.train, total if n_train is None else n_train, want, rng, None
        )
        if not train or not evals:
            raise TaskDataError(
                f"{self.train_from}: {total} rows are too few to hold out an eval split; add rows "
                "or an eval split file (dev.csv / validation.jsonl ...)"
            )
        notes.append(
            f"{self.name}: no eval split; {len(evals)} eval held out of {self.train_from} "
            f"(data.eval_fraction={self.fraction}), {len(train)} train, seed {seed}"
        )
        return Splits(train, evals, notes)


class PreRead:
    """A task whose rows were read when it was built: `load` only draws the splits."""

    rows: OwnRows

    def load(
        self,
        data_dir: str | None = None,
        regime: str = "all",
        seed: int = 0,
        n_train: int | None = None,
        n_eval: int | None = None,
    ) -> Splits:
        return self.rows.splits(seed, n_train, n_eval)


@dataclass(frozen=True)
class OwnEncoderTask(PreRead, EncoderTask):
    rows: OwnRows | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class OwnChoiceTask(PreRead, ChoiceTask):
    rows: OwnRows | None = field(default=None, repr=False, compare=False)
