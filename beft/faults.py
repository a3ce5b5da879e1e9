"""Fault injection for the kill-at-any-moment tests: BEFT_KILL_AT=<point>:<step> SIGKILLs the
process when the loop reaches that point at that optimizer step (`result` takes no step).

    step:N        right after optimizer step N and its log record (before its checkpoint)
    checkpoint:N  the checkpoint of step N written to last.tmp, not yet committed
    eval:N        the evaluation at step N done (logged, best adapter written), not yet checkpointed
    result        the final adapter written, result.json not yet

BEFT_KILL_AFTER_STEP=N is the older spelling of step:N. Tests that run in-process replace
`kill` by a function that raises.
"""
from __future__ import annotations

import os
import signal


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def point(name: str, step: int | None = None) -> None:
    """Kill here if BEFT_KILL_AT names this point (read on each call: tests set it per run)."""
    want = os.environ.get("BEFT_KILL_AT", "")
    if want and want == (name if step is None else f"{name}:{step}"):
        kill()
    if name == "step" and os.environ.get("BEFT_KILL_AFTER_STEP") == str(step):
        kill()
