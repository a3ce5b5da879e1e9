#!/usr/bin/env python
"""`beft plan` as a script (the same command; `beft plan -h` for its options)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beft.cli import run  # noqa: E402
from beft.commands.plan import main  # noqa: E402,F401

if __name__ == "__main__":
    run(main, sys.argv[1:])
