"""Extractive/abstractive QA readers: SQuAD v1.1 JSON and DROP JSON -> question rows."""

from __future__ import annotations

from pathlib import Path

from beft.tasks.base import TaskDataError
from beft.tasks.data import get, read_json
from beft.tasks.splits import DataSpec


def read_squad(path: Path, rel: str) -> list[dict]:
    """Rows {'title','context','question','answers'}; errors name the article/paragraph/question."""
    out = []
    for a, article in enumerate(get(read_json(path, rel), "data", rel)):
        for p, para in enumerate(get(article, "paragraphs", f"{rel} data[{a}]")):
            for q, qa in enumerate(get(para, "qas", f"{rel} data[{a}].paragraphs[{p}]")):
                loc = f"{rel} data[{a}].paragraphs[{p}].qas[{q}]"
                answers = [get(x, "text", loc) for x in get(qa, "answers", loc)]
                if not answers:
                    raise TaskDataError(f"{loc}: no answers")
                out.append(
                    {
                        "title": article.get("title", ""),
                        "context": get(para, "context", loc),
                        "question": get(qa, "question", loc),
                        "answers": answers,
                    }
                )
    return out


def drop_answer_text(answer: dict) -> str:
    """DROP answer dict -> text: the number, else the spans joined, else the date."""
    if answer.get("number"):
        return str(answer["number"])
    if answer.get("spans"):
        return " ".join(answer["spans"])
    date = answer.get("date") or {}
    return " ".join(str(date[k]) for k in ("day", "month", "year") if date.get(k)).strip()


def read_drop(path: Path, rel: str) -> list[dict]:
    """Rows {'context','question','answers'}: answers = the answer then the validated answers."""
    data = read_json(path, rel)
    if not isinstance(data, dict):
        raise TaskDataError(f"{rel}: expected a JSON object of passages")
    out = []
    for pid, item in data.items():
        for q, qa in enumerate(get(item, "qa_pairs", f"{rel} {pid}")):
            loc = f"{rel} {pid}.qa_pairs[{q}]"
            golds = [get(qa, "answer", loc)] + list(qa.get("validated_answers", []))
            answers = list(dict.fromkeys(t for t in map(drop_answer_text, golds) if t))
            if not answers:
                raise TaskDataError(f"{loc}: empty answer")
            out.append(
                {
                    "context": get(item, "passage", loc),
                    "question": get(qa, "question", loc),
                    "answers": answers,
                }
            )
    return out


SPECS: dict[str, DataSpec] = {
    "squad": DataSpec(
        "squad/train-v1.1.json", "squad/dev-v1.1.json", read_squad, group=lambda r: r["context"]
    ),
    "drop": DataSpec(
        "drop/drop_dataset_train.json",
        "drop/drop_dataset_dev.json",
        read_drop,
        group=lambda r: r["context"],
    ),
}
