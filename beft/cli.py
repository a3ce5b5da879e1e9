"""Shared command-line plumbing: key=value arguments and one-line errors."""
from __future__ import annotations

import os
import sys
from typing import Callable, Iterable


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


def run(main: Callable[[list[str]], int], argv: list[str]) -> None:
    """Call main; user errors become one line on stderr and a non-zero exit, no traceback
    (set BEFT_DEBUG=1 for the traceback)."""
    from .stop import Stopped
    try:
        code = main(argv)
    except Stopped as e:   # a checkpoint was written; 128 + SIGTERM, as if the signal had killed us
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(143)
    except (ValueError, FileNotFoundError, PermissionError, OSError, KeyError) as e:
        if os.environ.get("BEFT_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
