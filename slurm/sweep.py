#!/usr/bin/env python
"""Sweeps over models x tasks x bias targets x seeds x regimes, on SLURM (submitit) or locally.

beft sweep submit slurm/sweeps/table5.yaml executor=slurm dry_run=true   (or --executor slurm --dry-run)
python slurm/sweep.py submit slurm/sweeps/table5.yaml --executor slurm
python slurm/sweep.py status slurm/sweeps/table5.yaml
python slurm/sweep.py collect slurm/sweeps/table5.yaml --out tables/table5
"""

from __future__ import annotations

import sys

from beft.cli import run
from beft.sweep.cli import main

if __name__ == "__main__":
    run(main, sys.argv[1:], own_process=True)
