#!/usr/bin/env python
"""`beft train` as a script, for launchers that need a file (`beft train -h` for its options):

    deepspeed --num_gpus 2 launch/train.py --config ds_configs/zero3.json key=value ...
    torchrun --nproc_per_node 2 launch/train.py --fsdp key=value ...
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beft.cli import run  # noqa: E402
from beft.commands.train import main  # noqa: E402,F401

if __name__ == "__main__":
    run(main, sys.argv[1:])
