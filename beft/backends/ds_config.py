"""Fill a DeepSpeed JSON's "auto" fields from our config (no deepspeed import needed)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import dist


def fill(path: str, cfg, world_size: int, hidden_size: int | None) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DeepSpeed config {p} does not exist (see ds_configs/)")
    try:
        ds = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"DeepSpeed config {p} is not valid JSON: line {e.lineno}: {e.msg}") from None
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
    given = {"train_batch_size": cfg.batch_size, "train_micro_batch_size_per_gpu": micro,
             "gradient_accumulation_steps": accum}
    for k, v in given.items():
        if ds.get(k) != v:
            raise ValueError(f"DeepSpeed config {p}: {k}={ds.get(k)} disagrees with batch_size={cfg.batch_size}, "
                             f"world size {world_size}, optim.grad_accum={accum} (use \"auto\")")
    left = [k for k, v in _walk(ds) if v == "auto"]
    if left:
        raise ValueError(f"DeepSpeed config {p}: cannot fill \"auto\" for {', '.join(left)}")
    if "optimizer" in ds or "scheduler" in ds:
        raise ValueError(f"DeepSpeed config {p}: remove 'optimizer'/'scheduler'; beft passes its own "
                         "AdamW and schedule (set lr and optim.* in the beft config)")
    return ds


def _walk(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _walk(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))
