"""SuperGLUE JSONL (and original WiC) readers: raw fields plus an integer 'label'."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from beft.tasks.base import TaskDataError
from beft.tasks.data import get, label_index, read_jsonl, read_lines, where
from beft.tasks.splits import DataSpec

BOOL = (False, True)
Reader = Callable[[Path, str], list[dict]]


def jsonl_reader(rows_of: Callable[[dict, str], list[dict]]) -> Reader:
    """Reader for a JSONL file: each line's object (and its location, for errors) -> its rows."""

    def read(path: Path, rel: str) -> list[dict]:
        return [
            row for lineno, obj in read_jsonl(path, rel) for row in rows_of(obj, where(rel, lineno))
        ]

    return read


def fields_reader(keys: tuple[str, ...], labels: tuple) -> Reader:
    """Reader for flat records: copy `keys`, map 'label' to its index in `labels`."""

    def rows(obj: dict, loc: str) -> list[dict]:
        row = {k: get(obj, k, loc) for k in keys}
        row["label"] = label_index(get(obj, "label", loc), labels, loc)
        return [row]

    return jsonl_reader(rows)


def wsc_rows(obj: dict, loc: str) -> list[dict]:
    target = get(obj, "target", loc)
    return [
        {
            "text": get(obj, "text", loc),
            "span1_text": get(target, "span1_text", loc),
            "span2_text": get(target, "span2_text", loc),
            "label": label_index(get(obj, "label", loc), BOOL, loc),
        }
    ]


def multirc_rows(obj: dict, loc: str) -> list[dict]:
    """One row per (question, answer option); 'qid' is (passage idx, question idx)."""
    passage = get(obj, "passage", loc)
    return [
        {
            "passage": get(passage, "text", loc),
            "question": get(q, "question", loc),
            "answer": get(a, "text", loc),
            "qid": (obj.get("idx"), q.get("idx")),
            "label": label_index(get(a, "label", loc), (0, 1), loc),
        }
        for q in get(passage, "questions", loc)
        for a in get(q, "answers", loc)
    ]


def record_rows(obj: dict, loc: str) -> list[dict]:
    """One row per query; candidates are the passage's entities, answers the gold texts."""
    passage = get(obj, "passage", loc)
    text = get(passage, "text", loc)
    ents = [
        text[get(e, "start", loc) : get(e, "end", loc) + 1] for e in get(passage, "entities", loc)
    ]
    candidates = list(dict.fromkeys(ents))
    out = []
    for qa in get(obj, "qas", loc):
        answers = [get(a, "text", loc) for a in get(qa, "answers", loc)]
        gold = [i for i, c in enumerate(candidates) if c in answers]
        if not gold:
            raise TaskDataError(f"{loc}: no answer of query {qa.get('idx')} is a passage entity")
        out.append(
            {
                "passage": text,
                "query": get(qa, "query", loc),
                "candidates": candidates,
                "answers": answers,
                "label": gold[0],
            }
        )
    return out


read_wsc, read_multirc, read_record = map(jsonl_reader, (wsc_rows, multirc_rows, record_rows))


def read_wic_original(path: Path, rel: str) -> list[dict]:
    """Original WiC release: `<x>.data.txt` (word, PoS, i-j, s1, s2) beside `<x>.gold.txt` (T/F)."""
    gold_rel = rel.replace(".data.txt", ".gold.txt")
    golds = list(read_lines(path.with_name(path.name.replace(".data.txt", ".gold.txt")), gold_rel))
    rows = list(read_lines(path, rel))
    if len(golds) != len(rows):
        raise TaskDataError(f"{gold_rel}: {len(golds)} labels for {len(rows)} rows in {rel}")
    out = []
    for (lineno, line), (glineno, g) in zip(rows, golds):
        fields = line.split("\t")
        if len(fields) < 5:
            raise TaskDataError(f"{where(rel, lineno)}: missing column ({len(fields)} of 5 fields)")
        out.append(
            {
                "word": fields[0],
                "sentence1": fields[3],
                "sentence2": fields[4],
                "label": label_index(g.strip(), ("F", "T"), where(gold_rel, glineno)),
            }
        )
    return out


def sg(folder: str, read: Reader, group=None) -> DataSpec:
    return DataSpec(f"superglue/{folder}/train.jsonl", f"superglue/{folder}/val.jsonl", read, group)


SPECS: dict[str, DataSpec] = {
    "cb": sg(
        "CB", fields_reader(("premise", "hypothesis"), ("entailment", "contradiction", "neutral"))
    ),
    "rte": sg("RTE", fields_reader(("premise", "hypothesis"), ("entailment", "not_entailment"))),
    "boolq": sg("BoolQ", fields_reader(("passage", "question"), BOOL)),
    "copa": sg("COPA", fields_reader(("premise", "choice1", "choice2", "question"), (0, 1))),
    "wsc": sg("WSC", read_wsc),
    "multirc": sg("MultiRC", read_multirc, group=lambda r: r["qid"][0]),
    "record": sg("ReCoRD", read_record, group=lambda r: r["passage"]),
    "wic": DataSpec(
        "wic_original/train/train.data.txt", "wic_original/dev/dev.data.txt", read_wic_original
    ),
}
