#!/usr/bin/env python
"""`beft rank` as a script (the same command; `beft rank -h` for its options)."""

import sys

from beft.cli import run
from beft.commands.rank import main  # noqa: F401

if __name__ == "__main__":
    run(main, sys.argv[1:], own_process=True)
