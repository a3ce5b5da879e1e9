"""report_to: TensorBoard event files and W&B (offline) runs get metrics.jsonl's scalars and the
config, from rank 0; a missing package is a one-line error before the model loads."""

import json

import pytest

from beft import tracking
from beft.config import ConfigError, load_config
from beft.train import Trainer
from paths import DATA_DIR
from tiny import save_tiny


def _args(model, out, **kw):
    args = {
        "model": model,
        "task": "sst2",
        "bias": "v",
        "data.n_train": 32,
        "data.n_eval": 16,
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-2,
        "data.max_length": 32,
        "log_every": 2,
        "output_dir": str(out),
    }
    return {**args, **kw}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    return str(save_tiny("bert", tmp_path_factory.mktemp("track") / "bert"))


def _records(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_scalars_follow_metrics_records():
    assert tracking.scalars({"step": 4, "epoch": 1, "loss": 0.5, "lr": 1e-3, "grad_norm": 2}) == {
        "train/epoch": 1.0,
        "train/loss": 0.5,
        "train/lr": 1e-3,
        "train/grad_norm": 2.0,
    }
    assert tracking.scalars({"step": 4, "epoch": 1, "eval": {"accuracy": 0.75}}) == {
        "eval/accuracy": 0.75
    }
    assert tracking.scalars({"step": 0, "probe": {"loss_after": 0.1, "examples": 8}}) == {
        "probe/loss_after": 0.1,
        "probe/examples": 8.0,
    }
    assert (
        load_config(overrides={"report_to": "TensorBoard, wandb"}).report_to == "tensorboard,wandb"
    )
    with pytest.raises(ConfigError, match="report_to='mlflow'"):
        load_config(overrides={"report_to": "mlflow"})


def test_tensorboard_events_hold_the_metrics_and_config(tiny_bert, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    Trainer(load_config(overrides=_args(tiny_bert, out, report_to="tensorboard"))).run()
    acc = EventAccumulator(
        str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}
    ).Reload()
    recs = _records(out)
    train = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    evals = [(r["step"], r["eval"]["accuracy"]) for r in recs if "eval" in r]
    assert len(train) == 4 and len(evals) == 2
    for tag, want in (("train/loss", train), ("eval/accuracy", evals)):
        got = acc.Scalars(tag)
        assert [e.step for e in got] == [s for s, _ in want]
        assert [e.value for e in got] == pytest.approx([v for _, v in want], rel=1e-6)
    assert {"train/lr", "train/grad_norm", "train/examples_per_s", "train/epoch"} <= set(
        acc.Tags()["scalars"]
    )
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "report_to: tensorboard" in text and "task: sst2" in text


def test_wandb_offline_run_in_the_run_folder(tiny_bert, tmp_path, monkeypatch):
    """No network (WANDB_MODE=offline): the run is written under output_dir/wandb; what beft hands
    wandb (its Run.log and config, spied on) is metrics.jsonl's scalars at their steps."""
    wandb = pytest.importorskip("wandb")
    for k, v in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
    }.items():
        monkeypatch.setenv(k, v)
    logged, configs = [], []
    log, finish = wandb.Run.log, wandb.Run.finish
    monkeypatch.setattr(
        wandb.Run,
        "log",
        lambda self, d, step=None, **k: (logged.append((step, d)), log(self, d, step=step, **k))[1],
    )
    monkeypatch.setattr(
        wandb.Run,
        "finish",
        lambda self, *a, **k: (configs.append(dict(self.config)), finish(self, *a, **k))[1],
    )
    out = tmp_path / "wb"
    Trainer(load_config(overrides=_args(tiny_bert, out, report_to="wandb", epochs=1))).run()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), list((out / "wandb").iterdir())
    assert logged == [(r["step"], tracking.scalars(r)) for r in _records(out)]
    assert (
        configs[0]["task"] == "sst2"
        and configs[0]["report_to"] == "wandb"
        and configs[0]["data"]["n_eval"] == 16
    )


def test_wandb_resume_continues_the_same_run(tmp_path, monkeypatch):
    """resume=true (a resume step) reopens the W&B run the folder started, by the id kept in
    output_dir/wandb/run_id; a fresh start gets a new one."""
    pytest.importorskip("wandb")
    for k, v in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
    }.items():
        monkeypatch.setenv(k, v)

    def run_id(folder, resume_step):
        t = tracking.WandB(folder, {"task": "sst2"}, resume_step)
        t.log(1, {"train/loss": 1.0})
        got = t.run.id
        t.close()
        return got

    first = run_id(tmp_path / "a", None)
    assert (tmp_path / "a" / "wandb" / "run_id").read_text() == first
    assert run_id(tmp_path / "a", 3) == first
    saved = list((tmp_path / "a" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(saved) == 2 and {p.stem.removeprefix("run-") for p in saved} == {first}
    assert run_id(tmp_path / "b", None) != first


def test_missing_package_fails_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setitem(tracking.PACKAGES, "tensorboard", "beft_no_such_package")
    loaded = []
    monkeypatch.setattr(
        "beft.backends.local.LocalBackend.load_model", lambda *a, **k: loaded.append(1)
    )
    out = tmp_path / "missing"
    with pytest.raises(ValueError) as e:
        Trainer(load_config(overrides=_args("minilm", out, report_to="tensorboard"))).run()
    assert (
        str(e.value)
        == "report_to=tensorboard needs the beft_no_such_package package: pip install "
        "'beft[tensorboard]' (or drop report_to)"
    )
    assert not loaded and not out.exists()
