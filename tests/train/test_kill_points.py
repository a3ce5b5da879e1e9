"""A kill at any moment, then resume=true: the run finishes whatever was left (training, the final
evaluation, the best adapter, result.json) and ends exactly as the uninterrupted run (adapters
bit-equal, the same metrics.jsonl records but their timings). In-process: a function subscribed to
the
loop's point (beft/train/hooks.py) raises instead of SIGKILL; one case kills for real in a
subprocess.
"""

import json
import signal

import pytest

from beft import stop
from beft.config import load_config
from beft.train import Trainer, hooks
from fault_entry import at, sigterm_last_rank
from paths import DATA_DIR
from train_helpers import FAULT_ENTRY, adapter, launch, max_diff, result

# 8 steps per epoch, max_steps cuts epoch 1 after 6 steps: checkpoints at 2, 4, 6, 8 (epoch end,
# after its evaluation), 10, 12 and 14 (mid-epoch, so before the final evaluation)
ARGS = {
    "task": "sst2",
    "bias": "v",
    "data.n_train": 64,
    "data.n_eval": 32,
    "epochs": 2,
    "max_steps": 14,
    "batch_size": 8,
    "lr": 1e-2,
    "data.max_length": 32,
    "threads": 1,
    "log_every": 1,
    "checkpoint.every_steps": 2,
    "resume": "true",
    "data_dir": str(DATA_DIR),
}
TIMINGS = ("examples_per_s", "tokens_per_s")

# the loop's point -> the checkpoint step the resumed run starts from (None: none, it starts over)
KILLS = {
    "step:1": (
        None
    ),  # before the first checkpoint (metrics.jsonl held [1, 1, 2, ...] after resuming)
    "step:11": 10,  # mid-epoch
    "checkpoint:12": 10,  # checkpoint 12 written to last.tmp, not committed
    "eval:8": 6,  # epoch 0 evaluated (logged, best adapter written), not checkpointed
    "eval:14": (
        14
    ),  # the final evaluation, after checkpoint 14 (resumed to a TypeError and no result)
    "result": 14,  # the final adapter written, result.json not yet
}


class Killed(BaseException):
    pass


def _raise():
    raise Killed()


def train(model, out, **kw):
    t = Trainer(
        load_config(
            None, {k: str(v) for k, v in {**ARGS, "model": model, "output_dir": out, **kw}.items()}
        )
    )
    try:
        return t.run()
    finally:
        if hasattr(t, "memory"):
            t.memory.stop()


def records(out):
    return [
        {k: v for k, v in json.loads(x).items() if k not in TIMINGS}
        for x in (out / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def reference(tiny_dirs, need_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    train(tiny_dirs["bert_dropout"], out)
    return out


def assert_same_run(out, ref):
    a, b = result(out), result(ref)
    for key in ("status", "steps", "final", "best", "best_epoch", "warnings"):
        assert a[key] == b[key], key
    assert max_diff(adapter(out), adapter(ref)) == 0.0
    assert max_diff(adapter(out, "adapter_best"), adapter(ref, "adapter_best")) == 0.0
    assert records(out) == records(ref)
    assert not (out / "checkpoints" / "last.tmp").exists()


@pytest.mark.parametrize("point", list(KILLS))
def test_kill_anywhere_then_resume_finishes_as_uninterrupted(
    point, reference, tiny_dirs, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    with hooks.subscribed(at(point, _raise)), pytest.raises(Killed):
        train(tiny_dirs["bert_dropout"], out)
    assert not (out / "result.json").exists()
    capsys.readouterr()
    train(tiny_dirs["bert_dropout"], out)
    start = KILLS[point]
    printed = capsys.readouterr().out
    assert (f"resumed from step {start}" in printed) if start else ("resumed" not in printed)
    assert [r["step"] for r in result(out)["resumes"]] == ([start] if start else [])
    assert_same_run(out, reference)


def test_sigterm_at_the_last_step_then_resume(reference, tiny_dirs, tmp_path, monkeypatch):
    """SIGTERM after the last step checkpoints step 14 before the final evaluation; the resume
    evaluates."""
    out = tmp_path / "run"
    with (
        hooks.subscribed(at("stepped:14", sigterm_last_rank)),
        pytest.raises(stop.Stopped, match="after step 14"),
    ):
        train(tiny_dirs["bert_dropout"], out)
    train(tiny_dirs["bert_dropout"], out)
    assert_same_run(out, reference)


def test_sigkill_during_the_final_evaluation(reference, tiny_dirs, tmp_path):
    """The issue's repro with a real SIGKILL: checkpoint 14 is on disk, the final evaluation is
    not."""
    out = tmp_path / "run"
    args = [
        f"{k}={v}"
        for k, v in {**ARGS, "model": tiny_dirs["bert_dropout"], "output_dir": out}.items()
    ]
    p = launch(args, env={"BEFT_KILL_AT": "eval:14"}, script=FAULT_ENTRY)
    assert p.returncode == -signal.SIGKILL and not (out / "result.json").exists(), p.stderr[-2000:]
    assert json.loads((out / "checkpoints/last/meta.json").read_text())["step"] == 14
    train(tiny_dirs["bert_dropout"], out)
    assert_same_run(out, reference)
