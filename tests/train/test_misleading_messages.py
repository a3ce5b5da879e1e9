"""Messages that name the file and what to do: a damaged checkpoint file, a full disk, a model path
or output_dir that is a regular file. In-process; a full disk is a write raising ENOSPC."""

import errno

import pytest
import torch

from beft import outputs
from beft.backends.local import CheckpointCorrupt, read_state, write_state
from beft.models import resolve
from beft.outputs import DiskFull, OutputDirError, RunDir, atomic_write_text


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_checkpoint_file_named(damage, tmp_path):
    ckpt = tmp_path / "checkpoints" / "last"
    ckpt.mkdir(parents=True)
    path = ckpt / "state.pt"
    torch.save({"params": {"b": torch.randn(4000)}, "extra": {"step": 3}}, path)
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\x00" * 64}[damage]
    )
    with pytest.raises(CheckpointCorrupt) as e:
        read_state(path)
    msg = str(e.value)
    assert str(path) in msg and f"delete {ckpt}" in msg and "\n" not in msg


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_named_atomic_write(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.os, "fsync", _enospc)
    target = tmp_path / "result.json"
    with pytest.raises(
        DiskFull, match="no space left writing .*result.json .*MiB free.*resume=true"
    ) as e:
        atomic_write_text(target, "{}")
    assert str(target) in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temp file left


def test_full_disk_named_metrics_log(tmp_path, monkeypatch):
    class Full:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        write = _enospc

    monkeypatch.setattr(outputs, "open", Full, raising=False)
    with pytest.raises(DiskFull, match="metrics.jsonl"):
        RunDir(tmp_path).log({"step": 1})


def test_full_disk_named_checkpoint(tmp_path, monkeypatch):
    def full(*a, **k):  # what torch.save raises when the disk fills
        raise RuntimeError(
            "[enforce fail at inline_container.cc:626] . unexpected pos 128 vs 64: "
            "PytorchStreamWriter failed writing file data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFull, match="state.pt"):
        write_state({"x": 1}, tmp_path / "state.pt")
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):  # other errors pass through unchanged
        write_state({"x": 1}, tmp_path / "state.pt")


def test_model_path_that_is_a_file(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="is a file, not a model folder.*config.json"):
        resolve(str(f))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve(str(tmp_path / "missing"))


def test_output_dir_that_is_a_file(tmp_path):
    f = tmp_path / "out"
    f.write_text("x")
    with pytest.raises(
        OutputDirError, match=f"output_dir {f} is a file, not a folder; choose another"
    ):
        RunDir(f).prepare(overwrite=False, resume=False)
    with pytest.raises(OutputDirError, match=f"{f} is a file.*choose another output_dir"):
        RunDir(f / "run").prepare(overwrite=False, resume=False)
    assert f.read_text() == "x"
