"""Own data (task=FILE | FOLDER | HUB_ID): reading through datasets, classes, splits, and the
one-line errors for bad files, all before any model loads."""

import pytest
import torch

from beft.config import load_config
from beft.tasks import TaskDataError, get_task, task_for
from beft.tasks.scoring import mean_loglik, score_matrix
from own_files import (
    classification_folder,
    completion_file,
    pair_folder,
    regression_folder,
    sentiment,
    write_csv,
    write_jsonl,
)


def data(**kw):
    return load_config(None, {f"data.{k}": v for k, v in kw.items()}).data


def test_string_labels_csv_folder(tmp_path):
    task = task_for(str(classification_folder(tmp_path, 8, 4)), "encoder", data(text="sentence"))
    assert task.num_labels == 2 and task.labels == ("neg", "pos") and task.main_metric == "accuracy"
    splits = task.load(seed=0)
    assert len(splits.train) == 8 and len(splits.eval) == 4
    assert splits.train[0] == {"text": ("a great movie", None), "label": 1}
    assert task.metrics([1, 1, 0, 0], splits.eval) == {"macro_f1": 0.5, "accuracy": 0.5}


@pytest.fixture(scope="module")
def wordpiece():
    from transformers import AutoTokenizer

    from tiny import minilm_tokenizer_dir

    return AutoTokenizer.from_pretrained(minilm_tokenizer_dir())


def test_pair_columns_jsonl(tmp_path, wordpiece):
    task = task_for(str(pair_folder(tmp_path, 8, 4)), "encoder", data(text="[premise, hypothesis]"))
    assert task.labels == ("0", "1")
    ex = task.load(seed=0).eval[0]
    assert ex == {"text": ("a great movie", "it was good"), "label": 1}
    batch = task.collate(wordpiece, [ex], max_length=32)
    assert (batch["token_type_ids"] == 1).any()  # two segments: a real pair


def test_regression_parquet(tmp_path):
    task = task_for(
        str(regression_folder(tmp_path, 8, 4)), "encoder", data(text="sentence", label="score")
    )
    assert task.num_labels == 1 and task.labels is None and task.main_metric == "spearman"
    ev = task.load(seed=0).eval
    assert isinstance(ev[0]["label"], float)
    m = task.metrics([e["label"] for e in ev], ev)
    assert m["pearson"] == pytest.approx(1.0) and m["spearman"] == pytest.approx(1.0)


def test_held_out_eval_is_seeded_and_disjoint(tmp_path):
    rows = [{"sentence": f"review number {i}", "label": ["pos", "neg"][i % 2]} for i in range(40)]
    path = str(write_csv(tmp_path / "reviews.csv", rows))
    task = task_for(path, "encoder", data(text="sentence", eval_fraction=0.25))
    a, b, c = task.load(seed=1), task.load(seed=1), task.load(seed=2)
    assert len(a.eval) == 10 and len(a.train) == 30 and a.eval == b.eval and a.eval != c.eval
    assert not {e["text"] for e in a.eval} & {e["text"] for e in a.train}
    assert any("held out" in n for n in a.notes)


def test_decoder_label_words_score_like_builtin(tmp_path, tiny_llama, bpe_tokenizer):
    """template + verbalizer give the same batch and scores as the built-in SST-2 prompt."""
    rows = [
        {"sentence": "it was a great movie", "label": 1},
        {"sentence": "a terrible ending .", "label": 0},
    ]
    path = str(write_jsonl(tmp_path / "train.jsonl", rows * 5))
    task = task_for(
        path, "decoder", data(template="{sentence} It was", verbalizer="{0: terrible, 1: great}")
    )
    assert task.labels == ("0", "1") and task.metric_kind == "macro_f1"
    builtin = get_task("sst2", arch="decoder")
    ours = task.collate(
        bpe_tokenizer, [{"text": f"{r['sentence']} It was", "label": r["label"]} for r in rows], 64
    )
    ref = builtin.collate(
        bpe_tokenizer, [{"text_a": r["sentence"], "label": r["label"]} for r in rows], 64
    )
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)
    with torch.no_grad():
        s = score_matrix(mean_loglik(tiny_llama, ours), ours)
    assert s.shape == (2, 2) and torch.isfinite(s).all()


def test_completion_pairs(tmp_path, tiny_llama, bpe_tokenizer):
    task = task_for(
        str(completion_file(tmp_path / "qa.jsonl", 20)),
        "decoder",
        data(text="prompt", completion="completion"),
    )
    assert task.main_metric == "loglik" and task.labels is None
    splits = task.load(seed=0)
    assert len(splits.eval) == 2 and splits.eval[0]["completion"] in (" positive", " negative")
    batch = task.collate(bpe_tokenizer, splits.eval, max_length=64)
    n_target = [
        len(bpe_tokenizer(e["prompt"] + e["completion"])["input_ids"])
        - len(bpe_tokenizer(e["prompt"])["input_ids"])
        for e in splits.eval
    ]
    assert batch["target_mask"].sum(1).tolist() == n_target
    preds = task.predict(tiny_llama, batch)
    m = task.metrics(preds, splits.eval)
    with torch.no_grad():
        assert m["loglik"] == pytest.approx(
            -float(task.example_losses(tiny_llama, batch).mean()), abs=1e-5
        )
    assert m["exact_match"] in (0.0, 0.5, 1.0)


def test_exact_match_is_greedy_decoding(tmp_path, tiny_llama, bpe_tokenizer):
    """exact_match is 1 exactly where greedy generation from the prompt reproduces the completion's
    tokens."""
    ids = bpe_tokenizer("the cat sat on the", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = tiny_llama.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=bpe_tokenizer.eos_token_id,
        )  # (1, Lp + 3)
    wrong = out.clone()
    wrong[0, -1] = (out[0, -1] + 1) % len(
        bpe_tokenizer
    )  # the last completion token is not greedy's
    target = torch.zeros_like(out)
    target[:, ids.shape[1] :] = 1
    batch = {
        "input_ids": torch.cat([out, wrong]),
        "attention_mask": torch.ones(2, out.shape[1], dtype=torch.long),
        "target_mask": torch.cat([target, target]),
    }
    rows = [{"prompt": "a", "completion": " b"}] * 10
    task = task_for(
        str(write_jsonl(tmp_path / "train.jsonl", rows)),
        "decoder",
        data(text="prompt", completion="completion"),
    )
    assert [p[1] for p in task.predict(tiny_llama, batch)] == [True, False]


def header_only(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence,label\n")


BAD = {  # case: (files to write, data options, arch, expected start of the message, expected text)
    "missing column": (
        lambda d: classification_folder(d, 8, 4),
        dict(text="review"),
        "encoder",
        "no column 'review' (columns: sentence, label); set data.text",
    ),
    "unknown eval label": (
        lambda d: (
            classification_folder(d, 8, 4),
            write_csv(d / "dev.csv", sentiment(3) + [{"sentence": "meh", "label": "mixed"}]),
        ),
        dict(text="sentence"),
        "encoder",
        "dev.csv row 4: label 'mixed' is not a class",
    ),
    "empty eval split": (
        lambda d: (classification_folder(d, 8, 4), header_only(d / "dev.csv")),
        dict(text="sentence"),
        "encoder",
        "dev.csv: no examples",
    ),
    "empty train file": (
        lambda d: header_only(d / "train.csv"),
        dict(text="sentence"),
        "encoder",
        "train.csv: no examples",
    ),
    "unreadable parquet": (
        lambda d: (d.mkdir(exist_ok=True), (d / "train.parquet").write_bytes(b"not parquet")),
        dict(text="sentence"),
        "encoder",
        "train.parquet: cannot read as parquet",
    ),
    "bad json line": (
        lambda d: (
            d.mkdir(exist_ok=True),
            (d / "train.jsonl").write_text('{"sentence": "a", "label": 1}\n{oops\n'),
        ),
        dict(text="sentence"),
        "encoder",
        "train.jsonl: cannot read as json",
    ),
    "empty cell": (
        lambda d: write_csv(d / "train.csv", sentiment(4) + [{"sentence": "", "label": "pos"}]),
        dict(text="sentence"),
        "encoder",
        "row 5: column 'sentence' is empty",
    ),
    "one class": (
        lambda d: write_csv(d / "train.csv", [{"sentence": "x", "label": "pos"}] * 4),
        dict(text="sentence"),
        "encoder",
        "every example has label 'pos'",
    ),
    "no verbalizer word": (
        lambda d: classification_folder(d, 8, 4),
        dict(text="sentence", verbalizer="{pos: great}"),
        "decoder",
        "label 'neg' has no word in data.verbalizer",
    ),
    "regression on decoder": (
        lambda d: regression_folder(d, 8, 4),
        dict(text="sentence", label="score"),
        "decoder",
        "data.label 'score' holds numbers",
    ),
    "unknown eval split": (
        lambda d: classification_folder(d, 8, 4),
        dict(text="sentence", eval_split="test"),
        "encoder",
        "no split 'test' (splits: dev, train)",
    ),
    "template column": (
        lambda d: classification_folder(d, 8, 4),
        dict(template="{review} It was"),
        "decoder",
        "no column 'review' (columns: sentence, label); set data.template",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_is_one_line_error(case, tmp_path):
    write, opts, arch, expected = BAD[case]
    root = tmp_path / "d"
    root.mkdir()
    write(root)
    with pytest.raises(TaskDataError) as e:
        task_for(str(root), arch, data(**opts))
    msg = str(e.value)
    assert expected in msg and "\n" not in msg, msg


def test_unknown_names(tmp_path, monkeypatch):
    cfg = data()
    with pytest.raises(ValueError, match="unknown encoder task 'sst3'.*own data"):
        task_for("sst3", "encoder", cfg)
    with pytest.raises(TaskDataError, match="no such file or folder"):
        task_for(str(tmp_path / "mine.csv"), "encoder", cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskDataError, match="offline.*not in the HF cache"):
        task_for("someone/not-a-dataset-xyz", "encoder", cfg)


def test_builtin_empty_eval_split_found_at_load(tmp_path):
    """Issue 17 item 5: a header-only dev.tsv is an error when the task loads, not after
    training."""
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "a fine film\t1\n" * 4)
    (folder / "dev.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(TaskDataError, match=r"glue/SST-2/dev.tsv: no examples"):
        get_task("sst2").load(str(tmp_path), regime="all")
    (folder / "dev.tsv").write_text("sentence\tlabel\nok\t1\n")
    (folder / "train.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(TaskDataError, match=r"glue/SST-2/train.tsv: no examples"):
        get_task("sst2").load(str(tmp_path), regime="all")


def test_hub_dataset_id_keeps_class_names(monkeypatch):
    """A hub id is read with datasets.load_dataset (here a stand-in DatasetDict); a ClassLabel
    column
    gives the class names in the dataset's own order; an unlabeled row (-1) is refused."""
    import datasets

    feats = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
        }
    )
    rows = {
        "sentence": [r["sentence"] for r in sentiment(8)],
        "label": [int(r["label"] == "pos") for r in sentiment(8)],
    }
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=feats),
            "validation": datasets.Dataset.from_dict(
                {k: v[:4] for k, v in rows.items()}, features=feats
            ),
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: calls.append(name) or dd)
    task = task_for("someone/reviews", "encoder", data(text="sentence"))
    assert calls == ["someone/reviews"] and task.labels == ("negative", "positive")
    splits = task.load(seed=0)
    assert [e["label"] for e in splits.eval] == rows["label"][:4] and len(splits.train) == 8
    dd["validation"] = datasets.Dataset.from_dict(
        {"sentence": ["x"], "label": [-1]}, features=feats
    )
    with pytest.raises(
        TaskDataError, match="hub someone/reviews split validation row 1: label '-1' is not a class"
    ):
        task_for("someone/reviews", "encoder", data(text="sentence"))
