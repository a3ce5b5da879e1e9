"""What a run prints and records: epochs numbered from 1 everywhere (metrics.jsonl, result.json,
checkpoints' meta.json), an evaluation progress bar of its own, third-party load reports hidden
unless log_level=debug, and a last line naming the metric, the output folder and what to open next.
"""

import json
import logging

import pytest

from beft import quiet
from beft.config import load_config
from beft.train import Trainer, hooks
from train_helpers import base_args, result


class Records(logging.Handler):
    """What transformers' loggers emit (pytest's captures cannot see a handler's stream bound
    earlier)."""

    def __enter__(self):
        self.messages = []
        logging.getLogger("transformers").addHandler(self)
        return self

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __exit__(self, *exc):
        logging.getLogger("transformers").removeHandler(self)

    def load_report(self) -> bool:
        return any("LOAD REPORT" in m for m in self.messages)


def test_epochs_bars_and_final_line(tiny_dirs, need_data, tmp_path, capfd):
    out = tmp_path / "run"
    with Records() as logged:
        Trainer(load_config(overrides=base_args(tiny_dirs["bert"], out, log_every=4))).run()
    o = capfd.readouterr()
    assert not logged.load_report()
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs if "eval" in r] == [1, 2]
    assert [r["epoch"] for r in recs if "loss" in r] == [1, 1, 2, 2]  # 8 steps per epoch
    r = result(out)
    assert r["best_epoch"] in (1, 2)
    meta = json.loads((out / "checkpoints/last/meta.json").read_text())
    assert (meta["step"], meta["epoch"]) == (16, 2)
    assert "\reval:   0%" in o.err and "\rtrain: 100%" in o.err  # its own bar (it clears when done)
    assert "Loading weights" not in o.err
    m = r["main_metric"]
    assert o.out.splitlines()[-1] == (
        f"done: {m}={r['final'][m]:.4f} (best {r['best'][m]:.4f} at epoch {r['best_epoch']}), "
        f"{r['trainable']['trainable']:,} trained parameters -> {out}; next: {out}/result.json; "
        f"{out}/metrics.jsonl; beft export {out} peft={out}_peft"
        + "".join(f" | warning: {w}" for w in r["warnings"])
    )


def test_log_level_debug_shows_what_info_hides(tiny_dirs):
    from transformers import AutoModelForSequenceClassification

    ds = logging.getLogger(quiet.DEEPSPEED)
    accel = ds.makeRecord(
        ds.name,
        logging.WARNING,
        "/x/deepspeed/accelerator/real_accelerator.py",
        213,
        "Setting accelerator to CPU.",
        None,
        None,
    )
    shown = {}
    try:
        for level in ("info", "debug"):
            quiet.apply(level)
            with Records() as logged:
                AutoModelForSequenceClassification.from_pretrained(tiny_dirs["bert"], num_labels=2)
            shown[level] = (logged.load_report(), bool(ds.filter(accel)))
    finally:
        quiet.apply("debug")  # the libraries' defaults for the tests that follow
    assert shown == {"info": (False, False), "debug": (True, True)}


def test_a_fresh_run_over_an_unfinished_one_starts_over(tiny_dirs, need_data, tmp_path):
    """resume=false in a folder an unfinished run left (no result.json): the old run's log and
    checkpoint go once setup succeeds, so that neither the new log (health warnings read its losses)
    nor a later resume=true (which would continue the old checkpoint under the new log) mixes two
    runs."""
    out = tmp_path / "run"
    args = lambda **kw: load_config(overrides=base_args(tiny_dirs["bert"], out, log_every=4, **kw))

    class Killed(BaseException):
        pass

    def killed_at(label, cfg):
        def fn(point):
            if point == label:
                raise Killed()

        t = Trainer(cfg)
        with hooks.subscribed(fn), pytest.raises(Killed):
            t.run()
        t.memory.stop()  # its sampling thread (a killed process would take it along)

    killed_at("step:5", args(**{"checkpoint.every_steps": 2}))  # the old run: checkpoint at step 4
    assert json.loads((out / "checkpoints/last/meta.json").read_text())["step"] == 4
    killed_at("step:1", args())  # a fresh start, killed before its first checkpoint
    assert not (out / "checkpoints").exists() and (out / "metrics.jsonl").read_text() == ""
    Trainer(args()).run()
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "loss" in r] == [4, 8, 12, 16]
