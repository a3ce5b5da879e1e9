"""One command for every tool: `beft train | export | inventory | plan | rank | sweep ...`

    beft train model=minilm task=sst2 bias=v output_dir=runs/x
    beft export runs/x peft=runs/x_peft
    beft inventory model=minilm bias=v
    beft plan model=llama2-7b bias=v precision=bf16 batch_size=32 data.max_length=512 gpus=8 --config ds_configs/zero3.json
    beft plan --recipe runs/x/config.yaml gpu=a100-80
    beft rank model=minilm task=sst2 output_dir=runs/rank
    beft sweep submit slurm/sweeps/table5.yaml executor=local

Every command takes the training config's keys as key=value and the same flags (--recipe FILE,
--config DS.json, --fsdp, --load_in_8bit, --load_in_4bit where they apply); `beft COMMAND -h` says
more. The same entry runs as `python -m beft`; launch/*.py and slurm/sweep.py are thin aliases
(`deepspeed launch/train.py --config ...`, `torchrun ... launch/train.py --fsdp ...`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable

from ..cli import UsageError, run

COMMANDS = {
    "train": "beft.commands.train",
    "export": "beft.commands.export",
    "inventory": "beft.commands.inventory",
    "plan": "beft.commands.plan",
    "rank": "beft.commands.rank",
    "sweep": "beft.sweep.cli",
}


def command(name: str) -> Callable[[list[str]], int]:
    """The main(argv) of one command; an unknown name is a UsageError listing the commands."""
    if name not in COMMANDS:
        raise UsageError(
            f"unknown command {name!r}; commands: {', '.join(COMMANDS)} (beft -h for help)"
        )
    return importlib.import_module(COMMANDS[name]).main


def main(argv: list[str]) -> int:
    """`beft COMMAND ARGS...` in process: dispatch to the command's main."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    return command(argv[0])(argv[1:])


def entry() -> None:
    """The `beft` console script (and python -m beft): one-line errors, exit status 2."""
    run(main, sys.argv[1:], own_process=True)
