"""Shared task types: the data error, the Splits result, where the data folder is, and what is
missing."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "BEFT_DATA_DIR"


class TaskDataError(ValueError):
    """Task data is missing or malformed; the message names the file (and line) at fault."""


@dataclass
class Splits:
    train: list[dict]
    eval: list[dict]
    notes: list[str] = field(default_factory=list)


def data_root(data_dir: str | os.PathLike | None) -> Path | None:
    """`data_dir`, else $BEFT_DATA_DIR, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get(ENV_VAR)
    return Path(chosen) if chosen else None


def missing_data(root: Path | None, rel: str, expected: str, hub: str | None) -> TaskDataError:
    """The error for absent local data; `expected` is the layout shown when there is no folder,
    `hub` the hub split that would stand in when online (None: there is none)."""
    where, layout = (f"missing {root / rel}", rel) if root else ("no task data folder", expected)
    online = (
        f"; or go online (unset HF_HUB_OFFLINE and HF_DATASETS_OFFLINE) to load {hub}"
        if hub
        else ""
    )
    return TaskDataError(
        f"{where}: pass data_dir or set {ENV_VAR} to a folder laid out as "
        f"<data_dir>/{layout}{online}"
    )
