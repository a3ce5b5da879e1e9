"""Stop cleanly when asked to: SIGTERM is what SLURM sends before it kills a job (scancel,
`scontrol requeue`, preemption, the end of the time limit) and what torchrun / deepspeed pass on
to their ranks. The handler only sets a flag; the training loop checks it after each optimizer
step (all ranks agree through one all-reduce), writes a checkpoint at that step and raises
Stopped, so the next attempt (a requeue, or a rerun with resume=true) resumes from there instead
of from an older checkpoint. submitit installs a SIGTERM handler that only logs; ours replaces it
while training runs.
"""

from __future__ import annotations

import signal
import threading

_requested: int | None = None


class Stopped(RuntimeError):
    """Training stopped on a signal after writing a checkpoint."""


def _handler(signum, frame) -> None:
    global _requested
    _requested = signum


def install() -> object | None:
    """Catch SIGTERM; returns the previous handler for restore(). No-op off the main thread."""
    global _requested
    _requested = None
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _handler)


def restore(previous: object | None) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def requested() -> bool:
    return _requested is not None


def signal_name() -> str:
    return signal.Signals(_requested).name if _requested is not None else ""
