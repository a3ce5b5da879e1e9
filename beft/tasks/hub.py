"""The Hugging Face hub fallback: which hub split stands for each local file, and its row converter.

When a task's local eval file is missing and the hub is not disabled (HF_HUB_OFFLINE /
HF_DATASETS_OFFLINE), `load_hub` reads the matching split with `datasets.load_dataset` and turns
each hub row into exactly the example dict the local reader makes (same keys, same label
indices), so prompts, collate and metrics never know where the data came from.
Test splits are never listed: GLUE and SuperGLUE publish them without labels.

Where the hub copy is not the original file, the converted rows can differ:
- ReCoRD: the hub keeps unique answers, sorted; candidates follow `entity_spans` (sorted by start),
  so they match the local order when the file lists entities in passage order (it does).
- WSC: `wsc.fixed` repairs a few span texts that are not substrings of the text.
- DROP validation: the hub keeps only the validated answers (not the original `answer`), one
  entry per span, so a multi-span answer becomes several single-span golds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from beft.tasks.base import ENV_VAR, TaskDataError

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
Row = Mapping[str, Any]
Convert = Callable[[Row], dict]


@dataclass(frozen=True)
class HubSplit:
    name: str
    config: str | None
    split: str
    convert: Convert

    def __str__(self) -> str:
        config = f" config {self.config}" if self.config else ""
        return f"hub {self.name}{config} split {self.split}"


def offline() -> bool:
    """True when either offline variable is set to 1 (or true / yes / on, as huggingface_hub reads
    it)."""
    return any(
        os.environ.get(v, "").strip().upper() in {"1", "TRUE", "YES", "ON"} for v in OFFLINE_VARS
    )


def load_hub(source: HubSplit) -> list[dict]:
    import datasets  # only the hub fallback needs it

    try:
        rows = datasets.load_dataset(source.name, source.config, split=source.split)
    except Exception as e:  # network, auth, or a renamed dataset: say which and how to avoid it
        raise TaskDataError(
            f"cannot load {source} ({type(e).__name__}: {e}); for local files pass "
            f"data_dir or set {ENV_VAR}"
        ) from e
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(source.convert(row))
        except (KeyError, ValueError) as e:
            raise TaskDataError(f"{source} row {i}: {e!r}") from e
    return out


# ---- row converters: hub row -> the local reader's example ----


def label(row: Row) -> int:
    value = int(row["label"])
    if value < 0:
        raise ValueError("label -1: an unlabeled (test) split")
    return value


def score(row: Row) -> float:
    """STS-B scores are float32 on the hub; the shortest float32 repr gives back the file's 3.8."""
    return float(str(np.float32(row["label"])))


def records(value: Any) -> list[dict]:
    """A hub sequence of dicts, stored either as a dict of lists or as a list of dicts."""
    if isinstance(value, Mapping):
        return [dict(zip(value, vals, strict=True)) for vals in zip(*value.values(), strict=True)]
    return list(value)


def glue(a: str, b: str | None = None, target: Callable[[Row], float] = label) -> Convert:
    return lambda row: {"text_a": row[a], "text_b": row[b] if b else None, "label": target(row)}


def copy(*keys: str) -> Convert:
    return lambda row: {**{k: row[k] for k in keys}, "label": label(row)}


def multirc(row: Row) -> dict:
    idx = row["idx"]
    return {
        "passage": row["paragraph"],
        "question": row["question"],
        "answer": row["answer"],
        "qid": (idx["paragraph"], idx["question"]),
        "label": label(row),
    }


def record(row: Row) -> dict:
    spans = records(row["entity_spans"]) if "entity_spans" in row else []
    texts = [s["text"] for s in spans] or list(row["entities"])
    candidates = list(dict.fromkeys(texts))
    answers = list(row["answers"])
    gold = [i for i, c in enumerate(candidates) if c in answers]
    if not gold:
        raise ValueError("no answer is a passage entity")
    return {
        "passage": row["passage"],
        "query": row["query"],
        "candidates": candidates,
        "answers": answers,
        "label": gold[0],
    }


def squad(row: Row) -> dict:
    answers = list(row["answers"]["text"])
    if not answers:
        raise ValueError("no answers")
    return {
        "title": row["title"],
        "context": row["context"],
        "question": row["question"],
        "answers": answers,
    }


def drop(one_answer: bool) -> Convert:
    """`one_answer`: the train split holds one annotation, so its spans are one answer, joined
    as the local reader joins them; validation entries may come from several annotators."""

    def convert(row: Row) -> dict:
        entries = records(row["answers_spans"])
        texts = [
            " ".join(e["spans"].split()) if e["types"] == "date" else e["spans"] for e in entries
        ]
        answers = [" ".join(texts)] if one_answer else list(dict.fromkeys(texts))
        if not any(answers):
            raise ValueError("empty answer")
        return {"context": row["passage"], "question": row["question"], "answers": answers}

    return convert


# ---- the table: local folder, {local file: hub split}, hub dataset, config, converter ----

GLUE, SUPER_GLUE = "nyu-mll/glue", "aps/super_glue"
TSV = {"train.tsv": "train", "dev.tsv": "validation"}
JSONL = {"train.jsonl": "train", "val.jsonl": "validation"}
MNLI = {
    "train.tsv": "train",
    "dev_matched.tsv": "validation_matched",
    "dev_mismatched.tsv": "validation_mismatched",
}
WIC = {"train/train.data.txt": "train", "dev/dev.data.txt": "validation"}

SOURCES: list[tuple[str, dict[str, str], str, str | None, Convert]] = [
    ("glue/SST-2", TSV, GLUE, "sst2", glue("sentence")),
    ("glue/CoLA", TSV, GLUE, "cola", glue("sentence")),
    ("glue/MRPC", TSV, GLUE, "mrpc", glue("sentence1", "sentence2")),
    ("glue/STS-B", TSV, GLUE, "stsb", glue("sentence1", "sentence2", score)),
    ("glue/QQP", TSV, GLUE, "qqp", glue("question1", "question2")),
    ("glue/QNLI", TSV, GLUE, "qnli", glue("question", "sentence")),
    ("glue/MNLI", MNLI, GLUE, "mnli", glue("premise", "hypothesis")),
    ("glue/RTE", TSV, GLUE, "rte", glue("sentence1", "sentence2")),
    ("superglue/CB", JSONL, SUPER_GLUE, "cb", copy("premise", "hypothesis")),
    ("superglue/RTE", JSONL, SUPER_GLUE, "rte", copy("premise", "hypothesis")),
    ("superglue/BoolQ", JSONL, SUPER_GLUE, "boolq", copy("passage", "question")),
    (
        "superglue/COPA",
        JSONL,
        SUPER_GLUE,
        "copa",
        copy("premise", "choice1", "choice2", "question"),
    ),
    ("superglue/WSC", JSONL, SUPER_GLUE, "wsc.fixed", copy("text", "span1_text", "span2_text")),
    ("superglue/MultiRC", JSONL, SUPER_GLUE, "multirc", multirc),
    ("superglue/ReCoRD", JSONL, SUPER_GLUE, "record", record),
    ("wic_original", WIC, SUPER_GLUE, "wic", copy("word", "sentence1", "sentence2")),
    (
        "squad",
        {"train-v1.1.json": "train", "dev-v1.1.json": "validation"},
        "rajpurkar/squad",
        None,
        squad,
    ),
    ("drop", {"drop_dataset_train.json": "train"}, "ucinlp/drop", None, drop(one_answer=True)),
    ("drop", {"drop_dataset_dev.json": "validation"}, "ucinlp/drop", None, drop(one_answer=False)),
]

HUB: dict[str, HubSplit] = {
    f"{folder}/{file}": HubSplit(name, config, split, convert)
    for folder, files, name, config, convert in SOURCES
    for file, split in files.items()
}
