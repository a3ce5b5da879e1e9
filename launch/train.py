#!/usr/bin/env python
"""`beft train` as a script, for launchers that need a file (`beft train -h` for its options):

deepspeed --num_gpus 2 launch/train.py --config ds_configs/zero3.json key=value ...
torchrun --nproc_per_node 2 launch/train.py --fsdp key=value ...
"""

import sys

from beft.cli import run
from beft.commands.train import main  # noqa: F401

if __name__ == "__main__":
    run(main, sys.argv[1:], own_process=True)
