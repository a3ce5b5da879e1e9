"""Shared task types: the data error, the Splits result, and where the data folder is."""
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


def resolve_data_dir(data_dir: str | os.PathLike | None, expected: str) -> Path:
    """`data_dir`, else $BEFT_DATA_DIR; `expected` is a relative path shown in the error."""
    chosen = data_dir if data_dir is not None else os.environ.get(ENV_VAR)
    if not chosen:
        raise TaskDataError(
            f"no task data folder: pass data_dir or set {ENV_VAR} to a folder laid out as "
            f"<data_dir>/{expected}"
        )
    return Path(chosen)


def require_file(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise TaskDataError(
            f"missing {path}: pass data_dir or set {ENV_VAR} to a folder laid out as <data_dir>/{rel}"
        )
    return path
