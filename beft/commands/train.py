"""Train biases (or anything beft supports) with one loop and any launcher.

    beft train [--recipe FILE] [--load_in_8bit|--load_in_4bit] key=value ...
    deepspeed --num_gpus 2 launch/train.py --config ds_configs/zero3.json key=value ...
    torchrun --nproc_per_node 2 launch/train.py --fsdp key=value ...

Keys (dotted for nested fields): model task bias method data_dir regime seed lr epochs max_steps
batch_size output_dir resume overwrite optim.weight_decay data.max_length report_to log_level ...
(see beft/config.py). --config and --fsdp, or --load_in_8bit and --load_in_4bit, contradict each
other: give one.
"""

from __future__ import annotations

import sys

from .flags import parse_flags


def parse(argv: list[str]):
    from ..config import load_config

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        sys.exit(0)
    args = parse_flags(argv)
    return load_config(args.recipe, args.overrides, **args.fixed)


def main(argv: list[str]) -> int:
    cfg = parse(argv)
    from .. import quiet

    quiet.apply(cfg.log_level)  # before beft.train imports transformers (and with it DeepSpeed)
    from ..train import Trainer

    Trainer(cfg).run()
    return 0
