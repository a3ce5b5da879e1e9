"""Own data read through `datasets`: a local CSV / TSV / JSON / JSON Lines / Parquet file or folder,
or a hub dataset id, as named splits of plain rows.

A file is the train split. In a folder, each file's name gives its split (train.csv,
dev.jsonl, validation-00000-of-00001.parquet; several files of one split are read together).
A hub id is read with `datasets.load_dataset` (offline: only from the HF cache).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from beft.tasks.base import TaskDataError
from beft.tasks.hub import offline

FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
SUFFIXES = "/".join(FORMATS)


@dataclass(frozen=True)
class Source:
    """Where a task's rows come from: split name -> a reader of that split's rows, and where it
    is."""

    name: str
    splits: dict[str, tuple[str, Callable[[], list[dict]]]]
    classes: dict[str, list[str]] = field(
        default_factory=dict
    )  # column -> class names (hub ClassLabel)

    def read(self, split: str) -> list[dict]:
        where, read = self.splits[split]
        rows = read()
        if not rows:
            raise TaskDataError(
                f"{where}: no examples (an empty or header-only file?); add rows or name "
                "another split (data.train_split / data.eval_split)"
            )
        return rows

    def where(self, split: str) -> str:
        return self.splits[split][0]


def is_data_path(name: str) -> bool:
    """A name meant as a local file or folder: it exists, or it ends in a data suffix."""
    return Path(name).expanduser().exists() or Path(name).suffix.lower() in FORMATS


@contextmanager
def _quiet():
    """No progress bars or info logs from datasets (stderr stays for beft's own lines)."""
    import datasets

    bars = not datasets.are_progress_bars_disabled()
    level = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield datasets
    finally:
        datasets.logging.set_verbosity(level)
        if bars:
            datasets.enable_progress_bars()


def _first_line(e: BaseException) -> str:
    """The root cause (datasets wraps the reader's error in a generic one), on one line."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def read_files(files: list[Path], split: str) -> list[dict]:
    """Rows of `files` (one format) via datasets; any failure is one TaskDataError naming them."""
    where = ", ".join(map(str, files))
    kinds = {f.suffix.lower() for f in files}
    if len(kinds) > 1:
        raise TaskDataError(
            f"{where}: split '{split}' mixes file formats; keep one format per split"
        )
    builder, kw = FORMATS[kinds.pop()]
    # a private cache, gone after reading: no arrow copy of every file ever read piles up in the HF
    # cache, none goes stale, and ranks reading at once share no lock
    with _quiet() as datasets, tempfile.TemporaryDirectory(prefix="beft-data-") as cache:
        try:
            ds = datasets.load_dataset(
                builder,
                data_files={"rows": [str(f) for f in files]},
                split="rows",
                cache_dir=cache,
                **kw,
            )
        except Exception as e:  # pandas / arrow / json errors: report the file, not the library
            if "corresponds to no data" in str(e):
                return []
            raise TaskDataError(
                f"{where}: cannot read as {builder} ({_first_line(e)}); check the file "
                f"(suffixes {SUFFIXES})"
            ) from None
        return ds.to_list()


def split_name(path: Path) -> str:
    """train.csv -> train, validation-00000-of-00001.parquet -> validation, dev_matched.tsv ->
    dev."""
    m = re.match(r"[A-Za-z]+", path.stem)
    return (m.group(0) if m else path.stem).lower()


def local_source(name: str) -> Source:
    path = Path(name).expanduser()
    if not path.exists():
        raise TaskDataError(
            f"task {name!r}: no such file or folder (own data: a {SUFFIXES} file or a folder "
            "of them)"
        )
    if path.is_file():
        if path.suffix.lower() not in FORMATS:
            raise TaskDataError(
                f"task {name!r}: unknown file type {path.suffix or '(none)'}; use {SUFFIXES}"
            )
        files = {"train": [path]}
    else:
        found = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in FORMATS
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not found:
            raise TaskDataError(f"task {name!r}: the folder holds no {SUFFIXES} file")
        files = {}
        for f in found:
            files.setdefault(split_name(f), []).append(f)
    return Source(
        name,
        {
            split: (", ".join(map(str, fs)), lambda fs=fs, s=split: read_files(fs, s))
            for split, fs in files.items()
        },
    )


def hub_source(name: str) -> Source:
    """Every split of a hub dataset (offline: the HF cache only)."""
    with _quiet() as datasets:
        try:
            dd = datasets.load_dataset(name)
        except Exception as e:  # offline, not cached, no such dataset, network
            how = (
                "offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): not in the HF cache"
                if offline()
                else "cannot be loaded from the hub"
            )
            raise TaskDataError(
                f"task {name!r} is no built-in task, local file or folder, and as a hub dataset "
                f"{how} ({_first_line(e)}); pass a path to a {SUFFIXES} file or folder"
            ) from None
    features = next(iter(dd.values())).features if dd else {}
    classes = {c: list(f.names) for c, f in features.items() if isinstance(f, datasets.ClassLabel)}
    return Source(
        name,
        {split: (f"hub {name} split {split}", lambda d=d: d.to_list()) for split, d in dd.items()},
        classes,
    )


def open_source(name: str) -> Source:
    return local_source(name) if is_data_path(name) or "/" not in name else hub_source(name)
