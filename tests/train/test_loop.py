"""The training loop on one process: outputs, errors, exact resume, 8-bit base."""

import json

import pytest

from train_helpers import FAULT_ENTRY, adapter, base_args, launch, max_diff, result


def test_outputs_and_refusal_to_overwrite(tiny_dirs, need_data, tmp_path):
    out = tmp_path / "run"
    p = launch(base_args(tiny_dirs["bert"], out))
    assert p.returncode == 0, p.stderr[-3000:]
    for name in ("config.yaml", "metrics.jsonl", "result.json", "adapter/adapter.safetensors"):
        assert (out / name).is_file(), name
    r = result(out)
    assert r["status"] == "finished" and r["world_size"] == 1 and r["backend"] == "local"
    assert r["trainable"]["bias"] == 2 * 64 and r["trainable"]["head"] == 64 * 2 + 2
    assert r["steps"] == 16 and 0 <= r["final"]["accuracy"] <= 1 and r["best"] is not None
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if "eval" in x] == [1, 2]  # numbered from 1, as in meta.json
    a = adapter(out)
    assert set(a) == {f"bert.encoder.layer.{i}.attention.self.value.bias" for i in range(2)} | {
        "classifier.weight",
        "classifier.bias",
    }
    before = (out / "result.json").read_text()
    p = launch(base_args(tiny_dirs["bert"], out))
    assert p.returncode == 2 and "already holds a finished result" in p.stderr
    assert (out / "result.json").read_text() == before
    # overwrite=true whose run fails (the loss diverges): the finished run comes back, whole
    files = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    p = launch(base_args(tiny_dirs["bert"], out, lr="1e30", overwrite="true"))
    assert p.returncode == 2 and "loss is" in p.stderr and "is back in" in p.stderr, p.stderr[
        -2000:
    ]
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == files
    p = launch(base_args(tiny_dirs["bert"], out, seed=7, overwrite="true"))
    assert p.returncode == 0 and result(out)["seed"] == 7 and not (out / ".previous").exists()


def test_bad_input_fails_before_loading(tiny_dirs, tmp_path):
    p = launch(base_args(tiny_dirs["bert"], tmp_path / "x") + ["optim.lr=3"])
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        "error: unknown config key 'optim.lr'"
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = launch(base_args(tiny_dirs["bert"], blocker / "sub"))
    assert p.returncode == 2 and "not writable" in p.stderr
    assert not (tmp_path / "x").exists()
    p = launch(
        base_args(tiny_dirs["bert"], tmp_path / "t", task="sst3")
    )  # fails after the folder is made
    assert p.returncode == 2 and "sst3" in p.stderr and not (tmp_path / "t").exists(), p.stderr[
        -2000:
    ]
    p = launch(
        base_args("nonexist", tmp_path / "m"), env={"HF_HUB_OFFLINE": "1"}
    )  # not the hub's connection error
    assert (
        p.returncode == 2
        and "neither a built-in short name" in p.stderr
        and not (tmp_path / "m").exists()
    )
    p = launch(
        base_args(tiny_dirs["bert"], tmp_path / "d", arch="decoder")
    )  # trained a random LM head before
    assert (
        p.returncode == 2 and "is an encoder" in p.stderr and not (tmp_path / "d").exists()
    ), p.stderr[-2000:]


def test_nan_loss_stops_with_step(tiny_dirs, need_data, tmp_path):
    p = launch(base_args(tiny_dirs["bert"], tmp_path / "nan", lr="1e30", **{"optim.grad_clip": 0}))
    assert p.returncode == 2
    lines = p.stderr.split(
        "\n"
    )  # the error starts its own line, not the progress bar's (which ends in \r)
    assert any(x.startswith("error: loss is nan at step") for x in lines), p.stderr[-2000:]
    assert not (tmp_path / "nan" / "result.json").exists()


def test_kill_and_resume_is_bitwise(tiny_dirs, need_data, tmp_path):
    args = lambda out: base_args(
        tiny_dirs["bert_dropout"], out, **{"checkpoint.every_steps": 3, "resume": "true"}
    )
    assert launch(args(tmp_path / "a")).returncode == 0
    p = launch(args(tmp_path / "b"), env={"BEFT_KILL_AT": "step:11"}, script=FAULT_ENTRY)
    assert p.returncode != 0 and not (tmp_path / "b" / "result.json").exists()
    assert json.loads((tmp_path / "b/checkpoints/last/meta.json").read_text())["step"] == 9
    p = launch(args(tmp_path / "b"))
    assert p.returncode == 0 and "resumed from step 9" in p.stdout
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "b")) == 0.0
    steps = [json.loads(x)["step"] for x in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # records after the checkpoint were not duplicated


@pytest.mark.skipif(
    not __import__("beft.backends.quant", fromlist=["x"]).available(), reason="no bitsandbytes"
)
def test_8bit_decoder_lowers_loss(tiny_dirs, need_data, tmp_path):
    out = tmp_path / "q"
    p = launch(
        ["--load_in_8bit"]
        + base_args(
            tiny_dirs["llama"], out, epochs=3, lr="5e-2", log_every=1, **{"data.n_train": 32}
        )
    )
    assert p.returncode == 0, p.stderr[-3000:]
    losses = [
        json.loads(x)["loss"]
        for x in (out / "metrics.jsonl").read_text().splitlines()
        if "loss" in x
    ]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    r = result(out)
    assert r["trainable"]["bias"] == 2 * 32  # GQA: 2 kv heads x 16, added


@pytest.mark.skipif(
    not __import__("beft.backends.quant", fromlist=["x"]).available(), reason="no bitsandbytes"
)
@pytest.mark.parametrize("method", ["lora", "dora"])
def test_8bit_reparam_trains_bias_delta(method, tiny_dirs, need_data, tmp_path):
    """Bias LoRA / DoRA on an 8-bit base: the delta trains (loss falls), the int8 weights are
    untouched,
    and the adapter holds b0 + delta for the added (zero) v biases."""
    out = tmp_path / method
    p = launch(
        ["--load_in_8bit"]
        + base_args(
            tiny_dirs["llama"],
            out,
            method=method,
            epochs=3,
            lr="5e-2",
            log_every=1,
            **{"data.n_train": 32},
        )
    )
    assert p.returncode == 0, p.stderr[-3000:]
    losses = [
        json.loads(x)["loss"]
        for x in (out / "metrics.jsonl").read_text().splitlines()
        if "loss" in x
    ]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    a = adapter(out)
    assert {t.shape[0] for t in a.values()} == {32} and all(t.abs().sum() > 0 for t in a.values())
    assert result(out)["trainable"]["reparam"]["kind"] == method


def test_sigterm_checkpoints_at_that_step_and_resumes_bitwise(tiny_dirs, need_data, tmp_path):
    """SLURM's SIGTERM (scancel / requeue / preemption): stop after the current step with a
    checkpoint
    at that step (not the older periodic one), exit 143, resume to the uninterrupted result."""
    args = lambda out: base_args(
        tiny_dirs["bert_dropout"], out, **{"checkpoint.every_steps": 3, "resume": "true"}
    )
    assert launch(args(tmp_path / "a")).returncode == 0
    p = launch(args(tmp_path / "b"), env={"BEFT_TERM_AFTER_STEP": "11"}, script=FAULT_ENTRY)
    assert p.returncode == 143 and "stopped by SIGTERM after step 11" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not (tmp_path / "b" / "result.json").exists()
    assert json.loads((tmp_path / "b/checkpoints/last/meta.json").read_text())["step"] == 11
    p = launch(args(tmp_path / "b"))
    assert p.returncode == 0 and "resumed from step 11" in p.stdout
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "b")) == 0.0
    steps = [json.loads(x)["step"] for x in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_eval_every(tiny_dirs, need_data, tmp_path):
    """eval_every=0: one evaluation, after the last epoch; the result reports it as final and
    best."""

    def evals(out):
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["epoch"] for r in recs if "eval" in r]

    for every, want in (("0", [3]), ("2", [2, 3])):
        out = tmp_path / f"e{every}"
        p = launch(
            base_args(tiny_dirs["bert"], out, epochs=3, eval_every=every, **{"data.n_train": 16})
        )
        assert p.returncode == 0, p.stderr[-2000:]
        assert evals(out) == want
        assert result(out)["best_epoch"] in want and result(out)["final"] is not None
    p = launch(base_args(tiny_dirs["bert"], tmp_path / "bad", eval_every="-1"))
    assert p.returncode == 2 and "eval_every=-1" in p.stderr
