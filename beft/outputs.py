"""A run directory: resolved config, metrics.jsonl, checkpoints, result.json (atomic writes)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
from pathlib import Path

MIN_FREE_BYTES = 64 * 2**20


class OutputDirError(ValueError):
    pass


class DiskFull(OutputDirError):
    pass


@contextlib.contextmanager
def disk_full_names(path: str | os.PathLike):
    """A write under it that fails for want of space (ENOSPC, EDQUOT; torch.save says only "file
    write failed") is one line naming the file and the free space left, not a bare errno."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        full = (
            getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or isinstance(e, RuntimeError)
            and "write failed" in str(e)
        )
        if not full:
            raise
        try:
            free = f"{shutil.disk_usage(Path(path).parent).free // 2**20} MiB free"
        except OSError:
            free = "free space unknown"
        raise DiskFull(
            f"no space left writing {path} ({free}): free space on that disk or choose another "
            "output_dir, then resume=true"
        ) from None


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with disk_full_names(path), open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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

    previous = property(lambda self: self.path / ".previous")

    def prepare(self, *, overwrite: bool, resume: bool) -> None:
        """Fail early: a finished result is never overwritten unless asked; the folder must be
        writable and have room. overwrite=true moves the finished run aside (into .previous/;
        with resume=true only its result.json): it comes back if the new run fails
        (restore_previous) and is deleted once the new one has finished (drop_previous)."""
        if self.is_finished():
            if not overwrite:
                raise OutputDirError(
                    f"{self.path} already holds a finished result (result.json); "
                    "pass overwrite=true or choose another output_dir"
                )
            self.drop_previous()  # a replacement that finished but was killed before dropping it
            self.previous.mkdir()
            if resume:  # the run continues from its own checkpoints
                (self.previous / ".result_only").touch()
            for e in self._entries():
                if e.name == "result.json" or not resume:
                    e.rename(self.previous / e.name)
        if self.path.exists() and not self.path.is_dir():
            raise OutputDirError(
                f"output_dir {self.path} is a file, not a folder; choose another output_dir "
                "(or move the file away)"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".probe{os.getpid()}"
            probe.write_text("x")
            probe.unlink()
        except OSError as e:
            blocker = next((a for a in self.path.parents if a.exists() and not a.is_dir()), None)
            where = f" ({blocker} is a file)" if blocker else ""
            raise OutputDirError(
                f"output_dir {self.path} is not writable: {e.strerror or e}{where}; "
                "choose another output_dir"
            ) from None
        free = shutil.disk_usage(self.path).free
        if free < MIN_FREE_BYTES:
            raise OutputDirError(
                f"output_dir {self.path} has only {free // 2**20} MiB free; "
                f"need at least {MIN_FREE_BYTES // 2**20} MiB"
            )

    def _entries(self) -> list[Path]:
        return (
            [e for e in self.path.iterdir() if not e.name.startswith(".")]
            if self.path.is_dir()
            else []
        )

    def restore_previous(self) -> bool:
        """The new run failed: put the replaced finished run back (the new run's files go)."""
        if not self.previous.is_dir():
            return False
        result_only = (self.previous / ".result_only").exists()
        for e in self._entries():
            if not result_only or e.name == "result.json":
                shutil.rmtree(e) if e.is_dir() else e.unlink()
        (self.previous / ".result_only").unlink(missing_ok=True)
        for e in self.previous.iterdir():
            target = self.path / e.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            e.rename(target)
        self.previous.rmdir()
        return True

    def failed(self, *, created: bool, started: bool) -> None:
        """A run in this folder failed (not a SIGTERM stop, which leaves a checkpoint to resume):
        the finished run it was replacing comes back; a folder the run created goes when the
        failure came before training began. Rank 0 only."""
        if self.restore_previous():
            print(
                f"the run failed; the finished run it was replacing is back in {self.path}",
                file=sys.stderr,
                flush=True,
            )
        elif created and not started:
            shutil.rmtree(self.path, ignore_errors=True)

    def drop_previous(self) -> None:
        shutil.rmtree(self.previous, ignore_errors=True)

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
        with disk_full_names(self.metrics), open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def metrics_lines(self) -> int:
        return len(self.metrics.read_text().splitlines()) if self.metrics.is_file() else 0

    def start_over(self) -> None:
        """A run that starts from step 0 in a folder an unfinished run left: its log, checkpoints
        and adapters go (a later resume=true must not continue the old run's checkpoint under the
        new run's log). Rank 0, once setup has succeeded."""
        self.truncate_metrics(0, lines=0)
        for stale in (self.last_checkpoint.parent, self.adapter, self.path / "adapter_best"):
            shutil.rmtree(stale, ignore_errors=True)

    def truncate_metrics(self, step: int, lines: int | None = None) -> None:
        """On resume: keep the first `lines` records (those the checkpoint had seen: records
        after it will be logged again), or, for a checkpoint that did not count them, those up to
        its step. A run that restarts without a checkpoint passes lines=0."""
        if not self.metrics.is_file():
            return
        records = [line for line in self.metrics.read_text().splitlines() if line.strip()]
        keep = (
            records[:lines]
            if lines is not None
            else [line for line in records if json.loads(line).get("step", 0) <= step]
        )
        atomic_write_text(self.metrics, "".join(k + "\n" for k in keep))
