"""resume=true with a changed config: refused in one line naming each differing key (the run's files
untouched), unless only keys that may change on resume differ; those are recorded in result.json."""

import pytest

from beft.resume import ResumeError
from beft.train import TrainingError, hooks
from fault_entry import at
from test_kill_points import Killed, _raise, train
from train_helpers import result

REFUSED = [  # overrides on resume -> the line's list of differences
    ({"lr": "0.1"}, "lr (0.01 -> 0.1)"),
    ({"task": "rte", "seed": 7}, "seed (42 -> 7), task (sst2 -> rte)"),
    ({"bias": "q"}, "bias (v -> q)"),  # was a bare KeyError from the checkpoint's parameter names
]


@pytest.fixture
def killed(tiny_dirs, need_data, tmp_path, monkeypatch):
    """A run killed after step 11: its checkpoint is at step 10."""
    out = tmp_path / "run"
    with hooks.subscribed(at("step:11", _raise)), pytest.raises(Killed):
        train(tiny_dirs["bert"], out)
    return out


def test_changed_config_refused_in_one_line(killed, tiny_dirs):
    files = {f: f.read_bytes() for f in killed.rglob("*") if f.is_file()}
    for overrides, listed in REFUSED:
        with pytest.raises(ResumeError) as e:
            train(tiny_dirs["bert"], killed, **overrides)
        msg = str(e.value)
        assert "\n" not in msg and f"another config: {listed}; " in msg, msg
        assert {f: f.read_bytes() for f in killed.rglob("*") if f.is_file()} == files


def test_allowed_changes_are_recorded(killed, tiny_dirs, capsys):
    with pytest.raises(TrainingError, match="checkpoint is at step 10, past this config's 8 steps"):
        train(tiny_dirs["bert"], killed, max_steps=8)
    capsys.readouterr()
    train(tiny_dirs["bert"], killed, max_steps=16, log_every=2, threads=0)
    assert "note: resume changes max_steps: 14 -> 16" in capsys.readouterr().out
    r = result(killed)
    assert r["steps"] == 16
    assert r["resumes"] == [
        {"step": 10, "changed": {"log_every": [1, 2], "max_steps": [14, 16], "threads": [1, 0]}}
    ]
