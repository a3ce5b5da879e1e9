"""What a run tells the user: the progress bar, the per-rank memory report, the last line."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import __version__, health
from ..backends import dist


def progress(total: int, desc: str, **kw):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=1.0, **kw)


def announce_line(cfg, arch: str, backend: str, counts, splits) -> str:
    """The run's first line: what trains, on what, how many parameters, how many examples."""
    c = counts
    return (
        f"beft {__version__}: {cfg.model} ({arch}) task={cfg.task} method={cfg.method} "
        f"bias={cfg.bias} backend={backend} world={dist.world_size()} | trainable "
        f"{c.trainable:,} (bias {c.bias:,} = {c.bias_per_mille:.4f} per mille, head "
        f"{c.head:,}) | train {len(splits.train)} eval {len(splits.eval)}"
    )


def step_record(step: int, epoch: int, loss: float, lr: float, grad_norm, examples: int,
                tokens: int, seconds: float) -> dict:
    """One metrics.jsonl line of training (tokens: this rank's; the rate is over all ranks)."""
    return {
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "examples_per_s": examples / seconds,
        "tokens_per_s": dist.mean(tokens) * dist.world_size() / seconds,
    }


def done_line(result: dict, folder: Path, report_to: str, adapter: bool) -> str:
    """The run's last line: the main metric (final and best), the output folder, where to look next,
    then any warning (e.g. the loss diverged)."""
    m = result["main_metric"]
    final, best = (result["final"] or {}).get(m, float("nan")), (result["best"] or {}).get(
        m, float("nan")
    )
    nxt = [f"{folder}/result.json", f"{folder}/metrics.jsonl"]
    if "tensorboard" in report_to:
        nxt.append(f"tensorboard --logdir {folder}/tensorboard")
    if adapter:
        nxt.append(f"beft export {folder} peft={folder}_peft")
    return (
        f"done: {m}={final:.4f} (best {best:.4f} at epoch {result['best_epoch']}),"
        f" {result['trainable']['trainable']:,} trained parameters -> {folder}; next:"
        f" {'; '.join(nxt)}"
        + "".join(f" | warning: {w}" for w in result["warnings"])
    )


def memory_report(memory, setup_seconds: float) -> dict:
    """Per rank, in GB: peak anonymous memory (sampled every 0.2 s), the kernel's resident
    high-water
    mark (mapped checkpoint pages included), anonymous memory when the run began (imports done);
    and the setup (loading) time of rank 0. Every rank must call."""
    anon, hwm = memory.peak()
    memory.stop()
    world, rank = dist.world_size(), dist.rank()
    keys = ("peak_rss_anon_gb", "vm_hwm_gb", "start_rss_anon_gb", "start_rss_gb")
    slots = torch.zeros(len(keys), world, dtype=torch.float64)
    slots[:, rank] = (
        torch.tensor([anon, hwm, memory.start_anon, memory.start_rss], dtype=torch.float64) / 1e9
    )
    slots = dist.sum_tensors([slots])[0]
    return {
        **{k: [round(float(x), 3) for x in row] for k, row in zip(keys, slots)},
        "setup_s": round(setup_seconds, 2),
    }


def result_record(
    cfg,
    st,
    *,
    task,
    splits,
    arch: str,
    counts: dict,
    backend: str,
    shards: dict,
    memory: dict,
    losses: list[float],
) -> dict:
    """result.json of a finished run (st: its TrainState; losses: the logged training losses, in
    order, for the health warnings of beft/health.py)."""
    final = st.evals[-1] if st.evals else None
    warnings = health.loss_warnings(st.first_loss, losses) + health.baseline_warnings(
        task, splits.eval, final
    )
    return {
        "status": "finished",
        "final": final,
        "best": st.best,
        "best_epoch": st.best_epoch,
        "main_metric": task.main_metric,
        "trainable": counts,
        "steps": st.step,
        "wall_time_s": round(st.train_seconds, 2),
        "world_size": dist.world_size(),
        "backend": backend,
        "sharding_rank0": shards,
        "memory": memory,
        "model": cfg.model,
        "task": cfg.task,
        "arch": arch,
        "method": cfg.method,
        "bias": cfg.bias,
        "seed": cfg.seed,
        "n_train": len(splits.train),
        "n_eval": len(splits.eval),
        "notes": splits.notes,
        "beft_version": __version__,
        **({"probe": st.probe} if st.probe else {}),
        "resumes": st.resumes or [],
        "warnings": warnings,
    }
