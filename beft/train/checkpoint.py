"""The run's resume checkpoint: written to last.tmp by every rank, then committed as `last`
(beft/outputs.py RunDir), so that a kill at any moment leaves the previous one whole."""

from __future__ import annotations

import shutil

from ..backends import dist
from ..config import dump_config
from ..outputs import atomic_write_json, atomic_write_text
from ..resume import log_lines
from . import hooks
from .errors import TrainingError
from .state import TrainState


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


def resume(run_dir, backend, params: dict, step, total_steps: int, changes: dict, rank0: bool):
    """The TrainState of the last checkpoint, its trainable tensors loaded into `params` and its
    step state into `step`; rank 0 cuts metrics.jsonl back to the checkpoint's lines."""
    last = run_dir.last_checkpoint
    st = TrainState.from_dict(backend.load_checkpoint(last, params))
    if st.step_state:
        step.load_state_dict(st.step_state)
    if st.step > total_steps:
        raise TrainingError(
            f"resume=true: the checkpoint is at step {st.step}, past this "
            f"config's {total_steps} steps; raise max_steps or epochs"
        )
    st.resumes = [*(st.resumes or []), {"step": st.step, "changed": changes}]
    if rank0:
        run_dir.truncate_metrics(st.step, log_lines(last / "meta.json"))
        for k, (was, now) in changes.items():
            print(f"note: resume changes {k}: {was} -> {now}", flush=True)
        print(
            f"resumed from step {st.step} (epoch {st.epoch}, batch {st.batch_in_epoch})", flush=True
        )
    return st
