"""Experiment tracking: report_to=tensorboard | wandb | tensorboard,wandb (rank 0 only).

metrics.jsonl is always written; a tracker receives the same records as scalars (train/loss,
train/lr, ..., eval/<metric>, probe/<key>, at the record's optimizer step) and the resolved config
once. TensorBoard writes event files into <output_dir>/tensorboard; Weights & Biases writes under
<output_dir>/wandb and honours its own environment (WANDB_MODE=offline needs no network,
WANDB_PROJECT names the project, default beft). Both packages are optional extras
(pip install 'beft[tensorboard]' / 'beft[wandb]'); a missing one is reported before the model loads.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path
from typing import Protocol

from .outputs import atomic_write_text

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # report_to name -> module it needs
SECTIONS = ("eval", "probe")  # nested records: <section>/<key>


class Tracker(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def parse_report_to(spec: str) -> list[str]:
    """'none' | 'tensorboard' | 'wandb' | 'tensorboard,wandb' -> names (none: [])."""
    names = [
        n.strip().lower() for n in str(spec).split(",") if n.strip() and n.strip().lower() != "none"
    ]
    for n in names:
        if n not in PACKAGES:
            raise ValueError(f"report_to={spec!r}: {n!r} is not one of none, {', '.join(PACKAGES)}")
    return list(dict.fromkeys(names))


def check(spec: str) -> None:
    """Every tracker's package is importable (called before the model loads)."""
    for n in parse_report_to(spec):
        if importlib.util.find_spec(PACKAGES[n]) is None:
            raise ValueError(
                f"report_to={n} needs the {PACKAGES[n]} package: pip install 'beft[{n}]' "
                "(or drop report_to)"
            )


def scalars(record: dict) -> dict[str, float]:
    """A metrics.jsonl record as tracker scalars: top-level numbers under train/, nested sections
    (eval, probe) under their name; the step is the x axis, not a scalar."""
    out: dict[str, float] = {}
    for k, v in record.items():
        if k == "step":
            continue
        if k in SECTIONS and isinstance(v, dict):
            out.update({f"{k}/{kk}": float(vv) for kk, vv in v.items() if _number(vv)})
        elif _number(v) and not any(s in record for s in SECTIONS):
            out[f"train/{k}"] = float(v)
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class TensorBoard:
    def __init__(self, folder: Path, config: dict, resume_step: int | None):
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run drops what was logged after its checkpoint (metrics.jsonl does the same)
        self.writer = SummaryWriter(
            log_dir=str(folder / "tensorboard"),
            purge_step=None if resume_step is None else resume_step + 1,
        )
        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB:
    """A resumed run (resume=true) continues the same W&B run: its id is kept in
    <output_dir>/wandb/run_id. W&B refuses steps below the last one it logged, so the steps logged
    after the checkpoint and before the stop stay as they were (metrics.jsonl is rewound)."""

    def __init__(self, folder: Path, config: dict, resume_step: int | None):
        import wandb

        self.wandb = wandb
        id_file = folder / "wandb" / "run_id"
        run_id = (
            id_file.read_text().strip() if resume_step is not None and id_file.is_file() else ""
        )
        if not run_id:
            run_id = secrets.token_hex(4)
            id_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(id_file, run_id)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "beft"),
            name=folder.name,
            dir=str(folder),
            config=config,
            reinit="create_new",
            id=run_id,
            resume="allow",
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


KINDS = {"tensorboard": TensorBoard, "wandb": WandB}


class Trackers:
    """The run's trackers; log() takes metrics.jsonl records."""

    def __init__(self, spec: str, folder: Path, config: dict, resume_step: int | None = None):
        self.trackers: list[Tracker] = [
            KINDS[n](Path(folder), config, resume_step) for n in parse_report_to(spec)
        ]

    def log(self, record: dict) -> None:
        values = scalars(record)
        if values:
            for t in self.trackers:
                t.log(int(record.get("step", 0)), values)

    def close(self) -> None:
        for t in self.trackers:
            t.close()
        self.trackers = []
