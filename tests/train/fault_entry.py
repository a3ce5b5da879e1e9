"""launch/train.py with faults injected, for the tests that kill a run in a subprocess: the faults
are read here (this test-side script's environment), subscribed to the loop's named points
(beft/train/hooks.py), then `beft train` runs as launch/train.py runs it.

    BEFT_KILL_AT=<point>     SIGKILL this process at that point (step:N, checkpoint:N, eval:N,
                             result)
    BEFT_TERM_AFTER_STEP=N   SIGTERM the last rank right after optimizer step N (the others must
                             follow)

In-process tests use `at` with a function that raises: `with hooks.subscribed(at("step:11", fn))`.
"""

import os
import signal
import sys


def at(point: str, action):
    """A subscriber that calls action() when the loop reaches `point`."""

    def subscriber(label: str) -> None:
        if label == point:
            action()

    return subscriber


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sigterm_last_rank() -> None:
    from beft.backends import dist

    if dist.rank() == dist.world_size() - 1:
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    from beft.cli import run
    from beft.commands.train import main as train
    from beft.train import hooks

    if os.environ.get("BEFT_KILL_AT"):
        hooks.subscribe(at(os.environ["BEFT_KILL_AT"], sigkill))
    if os.environ.get("BEFT_TERM_AFTER_STEP"):
        hooks.subscribe(at(f"stepped:{os.environ['BEFT_TERM_AFTER_STEP']}", sigterm_last_rank))
    run(train, argv, own_process=True)


if __name__ == "__main__":
    main(sys.argv[1:])
