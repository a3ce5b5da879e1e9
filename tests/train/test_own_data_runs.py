"""Own data trains end to end: CSV / JSON Lines / Parquet files in every task shape on tiny models
(1 process, in-process), class names carried into the adapter and a merged export, a 2-rank FSDP2
run equal to the 1-process one, a sweep naming a file, and no run folder left by bad data."""

import json

import pytest

from beft.bias.adapter import load_adapter, read_adapter
from beft.bias.export import merge_checkpoint
from beft.config import load_config
from beft.models import load_model
from beft.tasks import TaskDataError
from beft.train import Trainer
from own_files import classification_folder, completion_file, pair_folder, regression_folder
from train_helpers import FAULT_ENTRY, assert_runs_agree, base_args, launch, result

# case: (model, files, data options, main metric, every metric reported)
CASES = {
    "csv string labels": (
        "bert",
        classification_folder,
        {"text": "sentence"},
        "accuracy",
        {"accuracy", "macro_f1"},
    ),
    "jsonl pair": (
        "bert",
        pair_folder,
        {"text": "[premise,hypothesis]"},
        "accuracy",
        {"accuracy", "macro_f1"},
    ),
    "parquet regression": (
        "bert",
        regression_folder,
        {"text": "sentence", "label": "score"},
        "spearman",
        {"pearson", "spearman"},
    ),
    "decoder label words": (
        "llama",
        classification_folder,
        {"template": "{sentence} It was", "verbalizer": "{neg: terrible, pos: great}"},
        "accuracy",
        {"accuracy", "macro_f1"},
    ),
    "decoder completion": (
        "llama",
        lambda d: completion_file(d / "train.jsonl", 40),
        {"text": "prompt", "completion": "completion"},
        "loglik",
        {"loglik", "exact_match"},
    ),
}


def train(model_dir, task, out, **kw):
    args = {
        "model": str(model_dir),
        "task": str(task),
        "bias": "v",
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-2,
        "data.max_length": 32,
        "threads": 1,
        "output_dir": str(out),
        **kw,
    }
    return Trainer(load_config(None, {k: str(v) for k, v in args.items()})).run()


@pytest.mark.parametrize("case", list(CASES))
def test_own_data_trains(case, tiny_dirs, tmp_path):
    model, write, opts, main, keys = CASES[case]
    root = tmp_path / "data"
    root.mkdir()
    write(root)
    r = train(tiny_dirs[model], root, tmp_path / "run", **{f"data.{k}": v for k, v in opts.items()})
    final = {k: v for k, v in r["final"].items() if k not in ("epoch", "step")}
    assert r["status"] == "finished" and r["main_metric"] == main and set(final) == keys, final
    assert r["n_train"] == (36 if case == "decoder completion" else 32)  # 40 rows, 10% held out
    for k, v in final.items():
        assert v == v and (v <= 0 if k == "loglik" else -1 <= v <= 1), (k, v)
    meta = read_adapter(tmp_path / "run" / "adapter")[1]
    if main == "accuracy":
        names = ["neg", "pos"] if "sentence" in str(opts) else ["0", "1"]
        assert meta["id2label"] == {"0": names[0], "1": names[1]} and meta["label2id"] == {
            names[0]: 0,
            names[1]: 1,
        }
    else:
        assert "id2label" not in meta


def test_export_carries_id2label(tiny_dirs, tmp_path):
    train(
        tiny_dirs["bert"],
        classification_folder(tmp_path / "data"),
        tmp_path / "run",
        **{"data.text": "sentence"},
    )
    model, tokenizer, _ = load_model(str(tiny_dirs["bert"]), "encoder", num_labels=2)
    selection = load_adapter(model, tmp_path / "run" / "adapter")
    merge_checkpoint(tmp_path / "merged", selection, model, tokenizer=tokenizer)
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {
        "neg": 0,
        "pos": 1,
    }


@pytest.mark.parametrize("builtin", [True, False])
def test_empty_eval_split_fails_before_the_model_loads(builtin, tiny_dirs, tmp_path, monkeypatch):
    """Issue 17 item 5: a header-only dev file stops the run at setup and leaves no run folder."""
    import beft.train.recipe

    monkeypatch.setattr(
        beft.train.recipe, "make_backend", _no_model_load(beft.train.recipe.make_backend)
    )
    data = tmp_path / "data"
    if builtin:
        (data / "glue" / "SST-2").mkdir(parents=True)
        (data / "glue" / "SST-2" / "train.tsv").write_text(
            "sentence\tlabel\n" + "a fine film\t1\n" * 16
        )
        (data / "glue" / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n")
        kw = {"task": "sst2", "data_dir": str(data)}
    else:
        classification_folder(data)
        (data / "dev.csv").write_text("sentence,label\n")
        kw = {"task": str(data), "data.text": "sentence"}
    out = tmp_path / "run"
    with pytest.raises(TaskDataError, match="dev.(tsv|csv): no examples"):
        train(tiny_dirs["bert"], out=out, **kw)
    assert not out.exists()


def _no_model_load(make_backend):
    def make(cfg):
        backend = make_backend(cfg)

        def refuse(*a, **k):
            raise AssertionError("the model loaded before the data was checked")

        backend.load_model = refuse
        return backend

    return make


def test_sweep_spec_names_a_file(tmp_path, monkeypatch):
    """A grid may list a data folder (relative to where the sweep is made); runs get its absolute
    path."""
    from beft.sweep.spec import parse_spec

    folder = classification_folder(tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(
        {
            "name": "own",
            "grid": {"model": ["minilm"], "task": ["sst2", "mine"], "bias": ["v"]},
            "config": {"data.text": "sentence"},
        },
        root=tmp_path / "sweep",
    )
    assert [run.config["task"] for run in spec.runs] == ["sst2", str(folder.resolve())]
    assert "-mine-v-" in spec.runs[1].run_id


@pytest.mark.dist
@pytest.mark.slow
def test_two_rank_fsdp_on_own_data_equals_one_process(tiny_dirs, tmp_path):
    folder = classification_folder(tmp_path / "data", n_train=64, n_eval=32)
    args = lambda out: base_args(
        tiny_dirs["bert"], out, task=str(folder), **{"data.text": "sentence"}
    )
    one = launch(args(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(args(tmp_path / "two"), launcher="fsdp")
    assert two.returncode == 0, (two.stdout + two.stderr)[-4000:]
    assert result(tmp_path / "two")["world_size"] == 2
    assert_runs_agree(tmp_path / "two", tmp_path / "one")
    assert result(tmp_path / "two")["final"] == pytest.approx(result(tmp_path / "one")["final"])
    assert read_adapter(tmp_path / "two" / "adapter")[1]["id2label"] == {"0": "neg", "1": "pos"}


@pytest.mark.slow
def test_kill_and_resume_on_held_out_own_data(tiny_dirs, tmp_path):
    """One file, no eval split: the seeded held-out draw is the same after a kill, and the resumed
    run
    ends bit-equal to the uninterrupted one."""
    from own_files import sentiment, write_csv
    from train_helpers import adapter, max_diff

    rows = [
        {"sentence": f"{r['sentence']} number {i}", "label": r["label"]}
        for i, r in enumerate(sentiment(80))
    ]
    path = write_csv(tmp_path / "reviews.csv", rows)
    args = lambda out: base_args(
        tiny_dirs["bert_dropout"],
        out,
        task=str(path),
        **{"data.text": "sentence", "checkpoint.every_steps": 3, "resume": "true"},
    )
    assert launch(args(tmp_path / "a")).returncode == 0
    p = launch(args(tmp_path / "b"), env={"BEFT_KILL_AT": "step:11"}, script=FAULT_ENTRY)
    assert p.returncode != 0 and not (tmp_path / "b" / "result.json").exists()
    p = launch(args(tmp_path / "b"))
    assert p.returncode == 0 and "resumed from step 9" in p.stdout, p.stderr[-2000:]
    assert result(tmp_path / "b")["n_eval"] == 32 and result(tmp_path / "b")["n_train"] == 48
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "b")) == 0.0
    assert result(tmp_path / "a")["final"] == result(tmp_path / "b")["final"]
