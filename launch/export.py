#!/usr/bin/env python
"""`beft export` as a script (the same command; `beft export -h` for its options)."""

import sys

from beft.cli import run
from beft.commands.export import main  # noqa: F401

if __name__ == "__main__":
    run(main, sys.argv[1:], own_process=True)
