"""GLUE TSV files: one row spec per task, read into {'text_a', 'text_b', 'label'} examples."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from beft.tasks.data import column, label_index, read_tsv, to_float, where
from beft.tasks.splits import DataSpec


@dataclass(frozen=True)
class TsvRows:
    """Which columns hold the texts and label; `labels` None means a float score (STS-B)."""

    text_a: str | int
    text_b: str | int | None
    label: str | int
    labels: tuple[str, ...] | None
    header: bool = True


def read_glue(rows: TsvRows, path: Path, rel: str) -> list[dict]:
    out = []
    for lineno, fields, columns in read_tsv(path, rel, rows.header):
        loc = where(rel, lineno)
        raw = column(fields, columns, rows.label, loc)
        label = to_float(raw, loc) if rows.labels is None else label_index(raw, rows.labels, loc)
        text_b = None if rows.text_b is None else column(fields, columns, rows.text_b, loc)
        out.append(
            {"text_a": column(fields, columns, rows.text_a, loc), "text_b": text_b, "label": label}
        )
    return out


NLI2 = ("entailment", "not_entailment")
NLI3 = ("entailment", "neutral", "contradiction")  # the GLUE label order used by HF

ROWS = {
    "sst2": TsvRows("sentence", None, "label", ("0", "1")),
    "cola": TsvRows(3, None, 1, ("0", "1"), header=False),
    "mrpc": TsvRows("#1 String", "#2 String", "Quality", ("0", "1")),
    "stsb": TsvRows("sentence1", "sentence2", "score", None),
    "qqp": TsvRows("question1", "question2", "is_duplicate", ("0", "1")),
    "qnli": TsvRows("question", "sentence", "label", NLI2),
    "mnli": TsvRows("sentence1", "sentence2", "gold_label", NLI3),
    "rte": TsvRows("sentence1", "sentence2", "label", NLI2),
}

FOLDERS = {
    "sst2": "SST-2",
    "cola": "CoLA",
    "mrpc": "MRPC",
    "stsb": "STS-B",
    "qqp": "QQP",
    "qnli": "QNLI",
    "mnli": "MNLI",
    "rte": "RTE",
}


def glue_spec(name: str) -> DataSpec:
    """`name` is a GLUE task, or 'mnli-mm' (MNLI trained the same, evaluated on mismatched)."""
    base = "mnli" if name == "mnli-mm" else name
    folder = f"glue/{FOLDERS[base]}"
    dev = {"mnli": "dev_matched.tsv", "mnli-mm": "dev_mismatched.tsv"}.get(name, "dev.tsv")
    return DataSpec(f"{folder}/train.tsv", f"{folder}/{dev}", partial(read_glue, ROWS[base]))
