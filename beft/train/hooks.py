"""Named points of the loop, for tests that inject faults: the list of subscribers is empty in
production, and the loop reads no environment variable for them. Each subscriber gets the point's
name, `<point>:<step>` where the point has a step:

    stepped:N     right after optimizer step N, before the ranks agree whether to stop (SIGTERM
                  tests)
    step:N        right after optimizer step N and its log record (before its checkpoint)
    checkpoint:N  the checkpoint of step N written to last.tmp, not yet committed (rank 0)
    eval:N        the evaluation at step N done (logged, best adapter written), not yet checkpointed
    result        the final adapter written, result.json not yet (rank 0)

tests/train/fault_entry.py subscribes a SIGKILL / SIGTERM for subprocess runs; in-process tests
subscribe a function that raises (`with hooks.subscribed(fn): ...`).
"""

from __future__ import annotations

import contextlib
from typing import Callable

_subscribers: list[Callable[[str], None]] = []


def subscribe(fn: Callable[[str], None]) -> None:
    _subscribers.append(fn)


def unsubscribe(fn: Callable[[str], None]) -> None:
    _subscribers.remove(fn)


@contextlib.contextmanager
def subscribed(fn: Callable[[str], None]):
    subscribe(fn)
    try:
        yield fn
    finally:
        unsubscribe(fn)


def point(name: str, step: int | None = None) -> None:
    if _subscribers:
        label = name if step is None else f"{name}:{step}"
        for fn in list(_subscribers):
            fn(label)
