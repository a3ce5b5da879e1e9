"""The run's resume checkpoint: written to last.tmp by every rank, then committed as `last`
(beft/outputs.py RunDir), so that a kill at any moment leaves the previous one whole."""

from __future__ import annotations

import shutil

from ..backends import dist
from ..config import dump_config
from ..outputs import atomic_write_json, atomic_write_text
from . import hooks


def save(run_dir, backend, params: dict, state, cfg, rank0: bool) -> None:
    """Trainable parameters, optimizer, scheduler, RNG and data position (state, a TrainState);
    never the frozen base. Every rank must call."""
    tmp = run_dir.last_checkpoint.with_name("last.tmp")
    if rank0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    backend.save_checkpoint(tmp, params, state.to_dict())
    dist.barrier()
    if rank0:  # the config that trained it (beft/resume.py) and the log lines it has seen
        atomic_write_text(tmp / "config.yaml", dump_config(cfg))
        atomic_write_json(
            tmp / "meta.json",
            {
                "step": state.step,
                "epoch": state.checkpoint_epoch,
                "metrics_lines": run_dir.metrics_lines(),
            },
        )
        hooks.point("checkpoint", state.step)
        run_dir.commit_checkpoint(tmp)
    dist.barrier()
