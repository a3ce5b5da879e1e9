"""Shared command-line plumbing: key=value arguments, one-line errors, machine-readable output."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, Callable, Iterable, Iterator


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit status 2."""


def parse_kv(args: list[str], allowed: set[str] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in args:
        if "=" not in a:
            raise UsageError(f"argument {a!r} is not key=value")
        k, v = a.split("=", 1)
        if allowed is not None and k not in allowed:
            raise UsageError(f"unknown option {k!r}; known: {', '.join(sorted(allowed))}")
        out[k] = v
    return out


def model_config(name: str, builtin: Iterable[str] = ()):
    """beft.models.load_config for the CLIs: an unknown model name is a UsageError."""
    from .models import ModelNotFound, load_config

    try:
        return load_config(name, builtin)
    except ModelNotFound as e:
        raise UsageError(str(e)) from None


def wants_json(args: list[str], key: str = "json") -> bool:
    """Whether key=value arguments ask for machine-readable output (json=true), read from argv
    before
    anything heavy is imported; a bad value is False here and the command's own parsing reports it.
    """
    from .config import ConfigError, _coerce

    value = next((a.split("=", 1)[1] for a in reversed(args) if a.startswith(key + "=")), None)
    try:
        return value is not None and _coerce(value, bool, key)
    except ConfigError:
        return False


@contextlib.contextmanager
def machine_output(enabled: bool = True) -> Iterator[Callable[[Any], None]]:
    """Stdout holds the JSON document alone, whatever libraries print meanwhile.

        with machine_output(wants_json(argv)) as emit:
            import transformers   # heavy imports after the redirect: their warnings go to stderr
            ...
            emit(document)

    While the block runs, file descriptor 1 is the process's stderr and sys.stdout is sys.stderr, so
    print(), logging handlers that captured sys.stdout when their library was imported (DeepSpeed's
    "Setting accelerator to CPU" warning) and C-level writes to fd 1 all land on stderr. emit(doc)
    keeps the document; when the block ends, fd 1 and sys.stdout are restored and, without an error,
    the last document given is written as JSON to stdout. On an error stdout stays empty.
    enabled=False (human-readable output): nothing is redirected and emit prints the document."""
    if not enabled:
        yield lambda doc: print(json.dumps(doc, indent=1))
        return
    doc: list[Any] = []
    saved = sys.stdout
    for f in (
        saved,
        sys.__stdout__,
        sys.stderr,
    ):  # what was printed before goes where it was meant to
        if f is not None:
            with contextlib.suppress(OSError, ValueError):
                f.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield doc.append
    finally:
        for f in (
            saved,
            sys.__stdout__,
            sys.stderr,
        ):  # noise still buffered for fd 1 goes to stderr too
            if f is not None:
                with contextlib.suppress(OSError, ValueError):
                    f.flush()
        os.dup2(real, 1)
        os.close(real)
        sys.stdout = saved
    if doc:  # the block ended without an error
        saved.write(json.dumps(doc[-1], indent=1) + "\n")
        saved.flush()


def json_command(
    doc: str, body: Callable[[list[str], Callable[[Any], None]], int]
) -> Callable[[list[str]], int]:
    """main(argv) of a command with json=true output: -h prints doc (no argument: doc, exit 2), and
    with json=true stdout is the document alone (machine_output) while body(argv, emit) runs."""

    def main(argv: list[str]) -> int:
        if not argv or argv[0] in ("-h", "--help"):
            print(doc)
            return 0 if argv else 2
        with machine_output(wants_json(argv)) as emit:
            return body(argv, emit)

    return main


def run(
    main: Callable[[list[str]], int], argv: list[str], *, own_process: bool = False
) -> None:
    """Call main; user errors become one line on stderr and a non-zero exit, no traceback
    (set BEFT_DEBUG=1 for the traceback). own_process: this Python exists only for this command (a
    script's __main__, the console script), so it ends through end_process; otherwise SystemExit."""
    from .stop import Stopped

    try:
        code = main(argv) or 0
    except Stopped as e:  # a checkpoint was written; 128 + SIGTERM, as if the signal had killed us
        print(f"stopped: {e}", file=sys.stderr)
        code = 143
    except (ValueError, FileNotFoundError, PermissionError, OSError, KeyError) as e:
        if os.environ.get("BEFT_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        code = 2
    if own_process:
        end_process(code)
    sys.exit(code)


def end_process(code: int) -> None:
    """Exit now, doing what a normal exit does that anything relies on (wait for non-daemon
    threads, run the atexit handlers: loggers, trackers, DeepSpeed; flush stdout and stderr) but not
    the interpreter's teardown of every module, which takes 2-3 s once torch and transformers are
    imported (measured on this project's CPU box: a tiny training run 12.2-14.3 s -> 10.3-10.4 s;
    `import torch` alone 1.0 s of exit). Every rank of every run paid it."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)
