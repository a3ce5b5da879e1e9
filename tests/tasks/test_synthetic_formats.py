"""ReCoRD / DROP / SQuAD readers on tiny files, and the one-file split arithmetic."""

import json
import random

import pytest
import torch

from beft.tasks import TaskDataError, get_task
from beft.tasks.splits import draw_disjoint, one_file_sizes

PASSAGE = "Obama met Merkel in Berlin.\n@highlight\nTalks went well"


def record_line(i: int) -> str:
    return json.dumps(
        {
            "idx": i,
            "passage": {
                "text": PASSAGE,
                "entities": [
                    {"start": 0, "end": 4},
                    {"start": 10, "end": 15},
                    {"start": 20, "end": 25},
                    {"start": 0, "end": 4},
                ],
            },
            "qas": [
                {
                    "idx": i,
                    "query": "@placeholder is in Germany.",
                    "answers": [{"start": 20, "end": 25, "text": "Berlin"}],
                }
            ],
        }
    )


def test_record_reader_and_candidates(tmp_path, bpe_tokenizer, tiny_llama):
    folder = tmp_path / "superglue" / "ReCoRD"
    folder.mkdir(parents=True)
    (folder / "val.jsonl").write_text("".join(record_line(i) + "\n" for i in range(6)))
    task = get_task("record", arch="decoder")
    splits = task.load(str(tmp_path), "low", 0)
    ex = splits.eval[0]
    assert ex["candidates"] == ["Obama", "Merkel", "Berlin"] and ex["label"] == 2
    assert task.prompt.candidates(ex)[2] == " Berlin is in Germany."
    assert task.prompt.prompt(ex).endswith("Berlin.\n- Talks went well\n-")
    batch = task.collate(bpe_tokenizer, splits.eval[:2], 128)
    assert batch["input_ids"].shape[0] == 6  # 2 examples x 3 candidates
    preds = task.predict(tiny_llama, batch)
    assert set(task.metrics(preds, splits.eval[:2])) == {"f1", "em"}
    assert torch.isfinite(task.loss(tiny_llama, batch))


def test_record_answer_not_an_entity(tmp_path):
    bad = json.loads(record_line(0))
    bad["qas"][0]["answers"][0]["text"] = "Paris"
    (tmp_path / "superglue" / "ReCoRD").mkdir(parents=True)
    (tmp_path / "superglue" / "ReCoRD" / "val.jsonl").write_text(
        record_line(1) + "\n" + json.dumps(bad) + "\n"
    )
    with pytest.raises(TaskDataError, match=r"ReCoRD/val.jsonl line 2: no answer"):
        get_task("record", arch="decoder").load(str(tmp_path), "low", 0)


def drop_file(n: int) -> dict:
    return {
        f"p{i}": {
            "passage": f"Passage {i}: 3 goals, then 4.",
            "qa_pairs": [
                {
                    "question": "How many goals?",
                    "query_id": f"q{i}",
                    "answer": {"number": "7", "spans": [], "date": {}},
                    "validated_answers": [{"number": "", "spans": ["seven goals"], "date": {}}],
                },
                {
                    "question": "When?",
                    "query_id": f"d{i}",
                    "answer": {
                        "number": "",
                        "spans": [],
                        "date": {"day": "4", "month": "July", "year": "1990"},
                    },
                },
            ],
        }
        for i in range(n)
    }


def test_drop_reader(tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "drop_dataset_train.json").write_text(json.dumps(drop_file(5)))
    (tmp_path / "drop" / "drop_dataset_dev.json").write_text(json.dumps(drop_file(3)))
    task = get_task("drop", arch="decoder")
    splits = task.load(str(tmp_path), "all", 0)
    assert len(splits.train) == 10 and len(splits.eval) == 6
    by_q = {ex["question"]: ex["answers"] for ex in splits.eval}
    assert by_q["How many goals?"] == ["7", "seven goals"] and by_q["When?"] == ["4 July 1990"]
    assert task.prompt.prompt(splits.eval[0]).startswith("Passage: Passage")
    assert task.metrics(["seven goals", "July 4 1990"], splits.eval[:2])["f1"] > 0.5


def test_drop_bad_json_names_file_and_line(tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "drop_dataset_dev.json").write_text('{\n "p0": {\n oops }\n')
    with pytest.raises(TaskDataError, match=r"drop/drop_dataset_dev.json line 3: not valid JSON"):
        get_task("drop", arch="decoder").load(str(tmp_path), "all", 0)


def test_squad_reader_names_question(tmp_path):
    (tmp_path / "squad").mkdir()
    data = {
        "data": [
            {"title": "T", "paragraphs": [{"context": "c", "qas": [{"question": "q", "id": "1"}]}]}
        ]
    }
    (tmp_path / "squad" / "dev-v1.1.json").write_text(json.dumps(data))
    with pytest.raises(
        TaskDataError,
        match=r"dev-v1.1.json data\[0\].paragraphs\[0\].qas\[0\]: missing field 'answers'",
    ):
        get_task("squad", arch="decoder").load(str(tmp_path), "low", 0)


@pytest.mark.parametrize(
    "total,n_train,n_eval,expected",
    [
        (3270, 1000, 1000, (1000, 1000)),  # both fit
        (104, 1000, 1000, (52, 52)),  # small file: halves
        (5463, 1000, None, (1000, 4463)),  # encoder: eval is the rest
        (5463, 9000, None, (2732, 2731)),  # encoder 'high' on a val-only file: eval keeps half
        (5463, None, None, (2732, 2731)),
    ],
)
def test_one_file_sizes(total, n_train, n_eval, expected):
    assert one_file_sizes(total, n_train, n_eval) == expected


def test_draw_disjoint_keeps_groups_whole():
    rows = [{"g": i // 3, "i": i} for i in range(30)]
    train, evals = draw_disjoint(rows, 12, 9, random.Random(0), group=lambda r: r["g"])
    assert len(train) == 12 and len(evals) == 9
    assert not {r["g"] for r in train} & {r["g"] for r in evals}
