#!/usr/bin/env python
"""Train biases (or anything beft supports) with one loop and any launcher.

    python launch/train.py [--recipe FILE] [--load_in_8bit|--load_in_4bit] key=value ...
    deepspeed --num_gpus 2 launch/train.py --config ds_configs/zero3.json key=value ...
    torchrun --nproc_per_node 2 launch/train.py --fsdp key=value ...

Keys (dotted for nested fields): model task bias method data_dir regime seed lr epochs max_steps
batch_size output_dir resume overwrite optim.weight_decay data.max_length ... (see beft/config.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beft.cli import UsageError, run  # noqa: E402


def parse(argv: list[str]):
    from beft.config import load_config
    fixed, overrides, recipe = {}, [], None
    it = iter(argv)
    for a in it:
        if a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if a.startswith("--local_rank") or a.startswith("--local-rank"):
            if "=" not in a:
                next(it, None)
            continue
        if a in ("--config", "--deepspeed", "--deepspeed_config", "--recipe"):
            value = next(it, None)
            if value is None:
                raise UsageError(f"{a} needs a file")
            if a == "--recipe":
                recipe = value
            else:
                fixed.update(backend="deepspeed", deepspeed_config=value)
        elif a == "--fsdp":
            fixed["backend"] = "fsdp"
        elif a in ("--load_in_8bit", "--load_in_4bit"):
            fixed["quant"] = a[len("--load_in_"):]
        elif a.startswith("--"):
            raise UsageError(f"unknown flag {a}; flags: --config FILE --recipe FILE --fsdp --load_in_8bit "
                             "--load_in_4bit; everything else is key=value")
        else:
            overrides.append(a)
    return load_config(recipe, overrides, **fixed)


def main(argv: list[str]) -> int:
    from beft.train import Trainer
    cfg = parse(argv)
    Trainer(cfg).run()
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
