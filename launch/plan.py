#!/usr/bin/env python
"""Memory planner: per-GPU weights, gradients, optimizer states and activations of one step.

    python launch/plan.py model=llama2-7b method=bias bias=v dtype=bf16 zero=3 gpus=8 batch=4 seq=512 gpu=a100-80

model   built-in (llama2-7b gpt-j-6b opt-1.3b opt-6.7b deepseek-coder-1.3b bert-base bert-large
        roberta-base minilm smollm2), or a hub id / local folder (its config.json is read)
method  full | bias (with bias=q|k|v|o|qv...|all) | bitfit | lora (with r=8 targets=qv)
dtype   fp32 | bf16 | fp16 | 8bit | 4bit        zero  0 | 1 | 2 | 3      fsdp  true|false
offload none | optimizer | param | all        gpus, batch (per GPU), seq
kernel  flash (GPU sdpa, default) | math (eager attention)
optim   adamw (backpropagation, default) | zo (forward passes only; method=bias or bitfit; one
        process, fsdp or zero=3) with zo_update=sgd|adam and zo_head=first_order|freeze (a new
        encoder head) kv_cache=true|false (decoders: a KV cache built in each forward; beft's
        scoring turns it off, default false)
activation_checkpointing  true|false (alias ckpt): layers keep only their inputs
gpu     t4 | a40 | a100-40 | a100-80 | h100-80 | h200 (or all)   json  true: print JSON
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beft.cli import UsageError, parse_kv, run  # noqa: E402
from beft.plan import GB, GPUS, Method, Setup, fits, format_plan, load_arch, plan  # noqa: E402

KEYS = {"model", "method", "bias", "r", "targets", "dtype", "zero", "fsdp", "offload", "gpus", "batch", "seq",
        "kernel", "gpu", "json", "optim", "zo_update", "zo_head", "activation_checkpointing", "ckpt",
        "kv_cache"}
BOOL = {"1": True, "true": True, "0": False, "false": False}
DTYPES = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "8bit": "int8", "int8": "int8", "4bit": "int4",
          "int4": "int4", "nf4": "int4"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    o = parse_kv(argv, allowed=KEYS)
    if "model" not in o:
        raise UsageError("model=... is required")
    if o.get("dtype", "bf16") not in DTYPES:
        raise UsageError(f"dtype {o['dtype']!r}: use {', '.join(DTYPES)}")
    try:
        ints = {k: int(o[k]) for k in ("zero", "gpus", "batch", "seq", "r") if k in o}
    except ValueError as e:
        raise UsageError(f"expected an integer: {e}") from None
    ckpt = o.get("activation_checkpointing", o.get("ckpt", "false"))
    kv = o.get("kv_cache", "false")
    if ckpt not in BOOL or kv not in BOOL:
        raise UsageError("activation_checkpointing and kv_cache take true or false")
    if o.get("kernel", "flash") not in ("flash", "math"):
        raise UsageError(f"kernel={o['kernel']!r}: flash or math")
    offload = {"true": "all", "false": "none"}.get(o.get("offload", "none"), o.get("offload", "none"))
    setup = Setup(dtype=DTYPES[o.get("dtype", "bf16")], zero=ints.get("zero", 0),
                  fsdp=o.get("fsdp", "false") in ("1", "true"), offload=offload, gpus=ints.get("gpus", 1),
                  batch=ints.get("batch", 1), seq=ints.get("seq", 512), kernel=o.get("kernel", "flash"),
                  optim=o.get("optim", "adamw"), zo_update=o.get("zo_update", "sgd"),
                  zo_head=o.get("zo_head", "first_order"), ckpt=BOOL[ckpt], kv_cache=BOOL[kv])
    method = Method.parse(o.get("method", "bias"), o.get("bias", "v"), ints.get("r", 8), o.get("targets", "qv"))
    try:
        p = plan(load_arch(o["model"]), method, setup)
    except ValueError as e:
        raise UsageError(str(e)) from None
    gpus = list(GPUS) if o.get("gpu") == "all" else ([o["gpu"]] if o.get("gpu") else [])
    if o.get("json") in ("1", "true"):
        p["fits"] = {g: fits(p["peak"], g)[0] for g in gpus}
        print(json.dumps(p, indent=1))
        return 0
    print(format_plan(o["model"], method, setup, p, gpus[0] if len(gpus) == 1 else None))
    if len(gpus) > 1:
        for g in gpus:
            ok, usable = fits(p["peak"], g)
            print(f"  {g:<8} {'fits' if ok else 'does NOT fit'} ({p['peak'] / GB:.1f} of {usable:.1f} GB usable)")
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
