"""Seeded train/eval selection: from a train file and an eval file, or disjointly from one file.

The rows come from local files when the eval file is there, else from the hub (see hub.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from beft.tasks.base import ENV_VAR, Splits, TaskDataError, data_root, missing_data
from beft.tasks.hub import HUB, load_hub, offline

Reader = Callable[[Path, str], list[dict]]


@dataclass(frozen=True)
class DataSpec:
    """Where a task's examples live (paths relative to the data folder) and how to read them.

    `train` may be absent locally; then train and eval are drawn disjointly from `eval`.
    `group` keeps related rows (e.g. one MultiRC passage's questions) on the same side; by
    default identical rows (WSC val holds duplicates) are kept on one side.
    """

    train: str | None
    eval: str
    read: Reader
    group: Callable[[dict], Hashable] | None = None


def one_file_sizes(total: int, n_train: int | None, n_eval: int | None) -> tuple[int, int]:
    """Sizes when both sides come from one file of `total` rows (None = as many as possible).

    If both requests fit, they are granted; otherwise eval keeps at least half the file
    (or what train leaves), and train gets the rest.
    """
    want_t = total if n_train is None else n_train
    want_e = total if n_eval is None else n_eval
    if want_t + want_e <= total:
        return want_t, want_e
    n_e = min(want_e, max(total - want_t, total // 2))
    return min(want_t, total - n_e), n_e


def content(row: dict) -> str:
    return repr(sorted(row.items()))


def draw_disjoint(
    rows: list[dict],
    n_train: int,
    n_eval: int,
    rng: random.Random,
    group: Callable[[dict], Hashable] | None,
) -> tuple[list[dict], list[dict]]:
    keyed: dict[Hashable, list[dict]] = {}
    for row in rows:
        keyed.setdefault(group(row) if group else content(row), []).append(row)
    groups = list(keyed.values())
    rng.shuffle(groups)
    eval_rows: list[dict] = []
    k = 0
    while k < len(groups) and len(eval_rows) < n_eval:
        eval_rows.extend(groups[k])
        k += 1
    train_rows = [row for g in groups[k:] for row in g]
    return train_rows[:n_train], eval_rows[:n_eval]


def sample(rows: list[dict], n: int | None, rng: random.Random) -> list[dict]:
    """`n` rows drawn with `rng` (all rows in file order when n is None or covers them)."""
    if n is None or n >= len(rows):
        return list(rows)
    return rng.sample(rows, n)


@dataclass
class Rows:
    """A task's rows as read, and where from; `train` None: draw both sides from `eval`."""

    eval: list[dict]
    eval_from: str
    train: list[dict] | None = None
    train_from: str = ""  # where train came from, or why there is none
    notes: list[str] = field(default_factory=list)


def read_local(spec: DataSpec, root: Path) -> Rows:
    rows = Rows(spec.read(root / spec.eval, spec.eval), spec.eval)
    if spec.train is not None and (root / spec.train).is_file():
        rows.train, rows.train_from = spec.read(root / spec.train, spec.train), spec.train
    else:
        rows.train_from = f"no local {spec.train}" if spec.train else "no train file"
    return rows


def read_rows(spec: DataSpec, data_dir: str | None, label: str) -> Rows:
    """Local files if the eval file is there; else the hub splits unless offline; else an error."""
    root = data_root(data_dir)
    if root is not None and (root / spec.eval).is_file():
        return read_local(spec, root)
    source = HUB.get(spec.eval)
    if source is None or offline():
        raise missing_data(
            root, spec.eval, spec.train or spec.eval, str(source) if source else None
        )
    why = f"no local {spec.eval}" if root else f"no data_dir or {ENV_VAR}"
    rows = Rows(load_hub(source), str(source), notes=[f"{label}: {why}; read from the hub"])
    train = HUB.get(spec.train) if spec.train else None
    if train is not None:
        rows.train, rows.train_from = load_hub(train), str(train)
    else:
        rows.train_from = "no hub train split"
    return rows


def load_splits(
    spec: DataSpec,
    data_dir: str | None,
    seed: int,
    n_train: int | None,
    n_eval: int | None,
    label: str,
) -> Splits:
    rows = read_rows(spec, data_dir, label)
    for got, where in ((rows.eval, rows.eval_from), (rows.train, rows.train_from)):
        if (
            got is not None and not got
        ):  # found before the model loads, not by the metrics after training
            raise TaskDataError(
                f"{where}: no examples (an empty or header-only file?); restore its rows"
            )
    rng = random.Random(seed)
    if rows.train is not None:
        train, evals = sample(rows.train, n_train, rng), sample(rows.eval, n_eval, rng)
        notes = [
            f"{label}: {len(train)} train from {rows.train_from}, {len(evals)} eval from "
            f"{rows.eval_from}, seed {seed}"
        ]
        return Splits(train, evals, rows.notes + notes)
    t, e = one_file_sizes(len(rows.eval), n_train, n_eval)
    train, evals = draw_disjoint(rows.eval, t, e, rng, spec.group)
    notes = [
        f"{label}: train ({len(train)}) and eval ({len(evals)}) drawn disjointly from "
        f"{rows.eval_from} ({rows.train_from}), seed {seed}"
    ]
    if n_train is not None and len(train) < n_train:
        notes.append(f"{label}: train capped at {len(train)} of {n_train} requested")
    return Splits(train, evals, rows.notes + notes)
