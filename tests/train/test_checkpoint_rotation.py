"""A checkpoint rotation cut by SIGKILL is repaired before resuming (RunDir.recover_checkpoint)."""

import json

from beft.outputs import RunDir
from beft.sweep.worker import checkpoint_step


def ckpt(path, step):
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"step": step}))


def test_stale_old_removed(tmp_path):
    rd = RunDir(tmp_path)
    ckpt(rd.last_checkpoint, 7)
    ckpt(rd.last_checkpoint.with_name("last.old"), 5)  # killed inside rmtree(last.old)
    rd.recover_checkpoint()
    assert checkpoint_step(rd) == 7 and not rd.last_checkpoint.with_name("last.old").exists()


def test_killed_between_renames_restores_old(tmp_path):
    rd = RunDir(tmp_path)
    ckpt(rd.last_checkpoint.with_name("last.old"), 5)  # last -> last.old done, last.tmp -> last not
    rd.recover_checkpoint()
    assert checkpoint_step(rd) == 5 and not rd.last_checkpoint.with_name("last.old").exists()


def test_rotation_after_a_stale_old(tmp_path):
    rd = RunDir(tmp_path)
    ckpt(rd.last_checkpoint, 7)
    ckpt(rd.last_checkpoint.with_name("last.old"), 5)
    ckpt(tmp_path / "checkpoints" / "last.tmp", 9)
    rd.commit_checkpoint(tmp_path / "checkpoints" / "last.tmp")  # used to fail: ENOTEMPTY
    assert checkpoint_step(rd) == 9
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last"]
