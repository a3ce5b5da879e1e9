"""Fill a DeepSpeed JSON's "auto" fields from our config (no deepspeed import needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import dist

# what DeepSpeed's init_distributed reads from a launcher (without them it tries MPI discovery)
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
MPI_ENV = ("OMPI_COMM_WORLD_RANK", "PMI_RANK")  # mpirun: DeepSpeed discovers the ranks itself


def check_launcher(path: str, environ=os.environ) -> None:
    """A DeepSpeed config needs a launcher that starts the ranks: run as plain python, DeepSpeed
    would fall back on MPI discovery and fail with "No module named 'mpi4py'" after the model has
    loaded. Refused up front instead; one process needs no DeepSpeed (leave out --config)."""
    if all(k in environ for k in LAUNCHER_ENV) or any(k in environ for k in MPI_ENV):
        return
    missing = ", ".join(k for k in LAUNCHER_ENV if k not in environ)
    raise ValueError(
        f"the DeepSpeed config {path} needs the deepspeed launcher ({missing} unset): "
        f"deepspeed --num_gpus N launch/train.py --config {path} ...; or leave out --config "
        "to train on one process"
    )


def read(path: str) -> dict:
    """The DeepSpeed JSON at path: a JSON object, or a one-line ValueError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DeepSpeed config {p} does not exist (see ds_configs/)")
    try:
        ds = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"DeepSpeed config {p} is not valid JSON: line {e.lineno}: {e.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(
            f"DeepSpeed config {p} cannot be read ({e}); pass a DeepSpeed JSON file "
            "(see ds_configs/)"
        ) from None
    if not isinstance(ds, dict):
        raise ValueError(
            f"DeepSpeed config {p} holds a JSON {type(ds).__name__}, not an object "
            '{"zero_optimization": {...}, ...}; see ds_configs/zero2.json'
        )
    zero = ds.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise ValueError(
            f"DeepSpeed config {p}: zero_optimization must be an object, e.g. "
            '{"stage": 2}; see ds_configs/zero2.json'
        )
    return ds


def fill(path: str, cfg, world_size: int, hidden_size: int | None) -> dict:
    p = Path(path)
    ds = read(path)
    accum = cfg.optim.grad_accum
    micro = cfg.batch_size // (world_size * accum)
    precision = cfg.precision
    dist.check_precision(precision)
    if precision == "auto":
        precision = "bf16" if dist.half_dtype("auto") is not None else "fp32"
    h = hidden_size or 1024
    gpu = torch.cuda.is_available()
    auto = {
        "train_batch_size": cfg.batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16.enabled": precision == "bf16",
        "fp16.enabled": precision == "fp16",
        "zero_optimization.reduce_bucket_size": h * h,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * h * h),
        "zero_optimization.stage3_param_persistence_threshold": 10 * h,
        # DeepSpeed's defaults (1e9 each) keep up to a billion gathered parameters alive: a whole
        # 0.4 B model stayed gathered through evaluation (measured, docs/scale.md). About one
        # transformer layer (12 h^2 parameters) bounds it.
        "zero_optimization.stage3_max_live_parameters": 12 * h * h,
        "zero_optimization.stage3_max_reuse_distance": 12 * h * h,
        "zero_optimization.offload_param.pin_memory": gpu,
        "zero_optimization.offload_optimizer.pin_memory": gpu,
    }
    for key, value in auto.items():
        node, *path_, leaf = [ds, *key.split(".")]
        for part in path_:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and node.get(leaf) == "auto":
            node[leaf] = value
    given = {
        "train_batch_size": cfg.batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
    }
    for k, v in given.items():
        if ds.get(k) != v:
            raise ValueError(
                f"DeepSpeed config {p}: {k}={ds.get(k)} disagrees with"
                f" batch_size={cfg.batch_size}, "
                f'world size {world_size}, optim.grad_accum={accum} (use "auto")'
            )
    left = [k for k, v in _walk(ds) if v == "auto"]
    if left:
        raise ValueError(f"DeepSpeed config {p}: cannot fill \"auto\" for {', '.join(left)}")
    if "optimizer" in ds or "scheduler" in ds:
        raise ValueError(
            f"DeepSpeed config {p}: remove 'optimizer'/'scheduler'; beft passes its own "
            "AdamW and schedule (set lr and optim.* in the beft config)"
        )
    return ds


def _walk(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _walk(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))
