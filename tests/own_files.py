"""Small own-data files written by the tests: CSV, JSON Lines and Parquet, in every task shape."""

from __future__ import annotations

import csv
import json
from pathlib import Path

GOOD = [
    "a great movie",
    "wonderful acting",
    "great fun",
    "a wonderful story",
    "fun and great",
    "lovely film",
]
BAD = [
    "a terrible movie",
    "awful acting",
    "boring and bad",
    "a bad story",
    "terrible fun",
    "awful film",
]


def sentiment(n: int) -> list[dict]:
    """n rows alternating pos / neg, string labels."""
    return [
        {
            "sentence": (GOOD if i % 2 == 0 else BAD)[i // 2 % 6],
            "label": "pos" if i % 2 == 0 else "neg",
        }
        for i in range(n)
    ]


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def classification_folder(root: Path, n_train: int = 32, n_eval: int = 16) -> Path:
    """train.csv + dev.csv with string labels."""
    write_csv(root / "train.csv", sentiment(n_train))
    write_csv(root / "dev.csv", sentiment(n_eval))
    return root


def pair_folder(root: Path, n_train: int = 32, n_eval: int = 16) -> Path:
    """train.jsonl + validation.jsonl: premise / hypothesis, int labels 0 / 1."""

    def rows(n):
        return [
            {
                "premise": r["sentence"],
                "hypothesis": "it was good",
                "label": int(r["label"] == "pos"),
            }
            for r in sentiment(n)
        ]

    write_jsonl(root / "train.jsonl", rows(n_train))
    write_jsonl(root / "validation.jsonl", rows(n_eval))
    return root


def regression_folder(root: Path, n_train: int = 32, n_eval: int = 16) -> Path:
    """train.parquet + validation.parquet: float scores."""

    def rows(n):
        return [
            {
                "sentence": r["sentence"],
                "score": (4.5 if r["label"] == "pos" else 0.5) + 0.1 * (i % 3),
            }
            for i, r in enumerate(sentiment(n))
        ]

    write_parquet(root / "train.parquet", rows(n_train))
    write_parquet(root / "validation.parquet", rows(n_eval))
    return root


def completion_file(path: Path, n: int = 40) -> Path:
    """One JSON Lines file of prompt / completion pairs (no eval split: one is held out)."""
    return write_jsonl(
        path,
        [
            {
                "prompt": f"Review {i}: {r['sentence']}\nSentiment:",
                "completion": " positive" if r["label"] == "pos" else " negative",
            }
            for i, r in enumerate(sentiment(n))
        ],
    )
