"""A run directory: resolved config, metrics.jsonl, checkpoints, result.json (atomic writes)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MIN_FREE_BYTES = 64 * 2**20


class OutputDirError(ValueError):
    pass


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    result = property(lambda self: self.path / "result.json")
    adapter = property(lambda self: self.path / "adapter")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last")

    def is_finished(self) -> bool:
        return self.result.is_file()

    def prepare(self, *, overwrite: bool, resume: bool) -> None:
        """Fail early: a finished result is never overwritten unless asked; the folder must be
        writable and have room."""
        if self.is_finished():
            if not overwrite:
                raise OutputDirError(f"{self.path} already holds a finished result (result.json); "
                                     "pass overwrite=true or choose another output_dir")
            self.result.unlink()
            if not resume:
                for p in (self.metrics, self.adapter, self.path / "checkpoints"):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".probe{os.getpid()}"
            probe.write_text("x")
            probe.unlink()
        except OSError as e:
            raise OutputDirError(f"output_dir {self.path} is not writable: {e.strerror or e}") from None
        free = shutil.disk_usage(self.path).free
        if free < MIN_FREE_BYTES:
            raise OutputDirError(f"output_dir {self.path} has only {free // 2**20} MiB free; "
                                 f"need at least {MIN_FREE_BYTES // 2**20} MiB")

    def commit_checkpoint(self, tmp: Path) -> None:
        """Make `tmp` the last checkpoint: last -> last.old, tmp -> last, drop last.old. A kill at
        any point leaves one complete checkpoint that recover_checkpoint() finds."""
        final = self.last_checkpoint
        old = final.with_name("last.old")
        self.recover_checkpoint()
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def recover_checkpoint(self) -> None:
        """Repair a rotation that a kill interrupted: keep whichever copy is complete."""
        final = self.last_checkpoint
        old = final.with_name("last.old")
        if not old.exists():
            return
        if not (final / "meta.json").is_file() and (old / "meta.json").is_file():
            shutil.rmtree(final, ignore_errors=True)
            old.rename(final)
        else:
            shutil.rmtree(old)

    def log(self, record: dict) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """On resume: drop records logged after the checkpoint (they will be logged again)."""
        if not self.metrics.is_file():
            return
        keep = [line for line in self.metrics.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.metrics, "".join(k + "\n" for k in keep))
