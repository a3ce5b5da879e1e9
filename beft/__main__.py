"""python -m beft COMMAND ... (the same as the `beft` console script)."""

from beft.commands import entry

entry()
