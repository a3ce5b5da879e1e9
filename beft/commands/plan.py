"""Memory planner: per-GPU weights, gradients, optimizer states and activations of one step.

    beft plan model=llama2-7b bias=v precision=bf16 batch_size=32 data.max_length=512 gpus=8 gpu=a100-80 --config ds_configs/zero3.json
    beft plan --recipe runs/x/config.yaml gpus=8 gpu=a100-80       (a run's config: what it would need)
    beft plan model=llama2-7b method=bias bias=v dtype=bf16 zero=3 gpus=8 batch=4 seq=512 gpu=a100-80

The training config's keys and flags mean what they mean in training (beft/commands/plan_keys.py):
batch_size (global) data.max_length precision quant --load_in_8bit --config DS.json --fsdp
optim.kind
zo.update zo.head activation_checkpointing method bias model. The planner's own options:

model   built-in (llama2-7b gpt-j-6b opt-1.3b opt-6.7b deepseek-coder-1.3b bert-base bert-large
        roberta-base minilm smollm2), or a hub id / local folder (its config.json is read)
method  full | bias (with bias=q|k|v|o|qv...|all) | bitfit | peft_lora (LoRA on the weights, with
        r=8 targets=qv) | lora vera vera1d dora pissa (bias reparametrisations: planned as bias)
dtype   fp32 | bf16 | fp16 | 8bit | 4bit        zero  0 | 1 | 2 | 3  or  fsdp  true|false (not both)
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

from ..cli import UsageError, json_command, model_config, parse_kv
from ..config import ConfigError, _coerce, load_config
from ..plan import BUILTIN, GB, GPUS, Method, Setup, fits, format_plan, load_arch, plan
from .plan_keys import plan_options

KEYS = {
    "model",
    "method",
    "bias",
    "r",
    "targets",
    "dtype",
    "zero",
    "fsdp",
    "offload",
    "gpus",
    "batch",
    "seq",
    "kernel",
    "gpu",
    "json",
    "optim",
    "zo_update",
    "zo_head",
    "activation_checkpointing",
    "ckpt",
    "kv_cache",
}
DTYPES = {
    "fp32": "fp32",
    "bf16": "bf16",
    "fp16": "fp16",
    "8bit": "int8",
    "int8": "int8",
    "4bit": "int4",
    "int4": "int4",
    "nf4": "int4",
}
# options that are keys of the training config too: parsed and validated by beft/config.py itself
CONFIG_KEYS = {
    "bias": "bias",
    "targets": "bias",
    "activation_checkpointing": "activation_checkpointing",
    "ckpt": "activation_checkpointing",
    "optim": "optim.kind",
    "zo_update": "zo.update",
    "zo_head": "zo.head",
}


def _train_config(o: dict[str, str], keys: tuple[str, ...]):
    """The given plan options among `keys`, parsed and validated together by the training config
    (beft/config.py: types, choices, bias targets, combinations); errors name the plan's keys."""
    given = {k: CONFIG_KEYS[k] for k in keys if k in o}
    try:
        return load_config(overrides={c: o[k] for k, c in given.items()})
    except ConfigError as e:
        msg = str(e)
        for k, c in given.items():
            msg = msg.replace(c, k, 1)
        raise UsageError(msg) from None


def _targets(spec: str) -> str:
    """'q,v' -> 'qv', 'all' / 'bitfit' -> 'all' (beft.bias.parse_targets, as the training config
    reads bias=)."""
    from ..bias import parse_targets

    return "".join(parse_targets(spec))


def _main(argv: list[str], emit) -> int:
    o = parse_kv([f"{k}={v}" for k, v in plan_options(argv, KEYS).items()], allowed=KEYS)
    if not o.get("model"):
        raise UsageError("model=... is required (a built-in name, a hub id or a local folder)")
    if o.get("dtype", "bf16") not in DTYPES:
        raise UsageError(f"dtype={o['dtype']!r} is not one of {', '.join(DTYPES)}")
    if o.get("kernel", "flash") not in ("flash", "math"):
        raise UsageError(f"kernel={o['kernel']!r} is not one of flash, math")
    if o.get("gpu", "all") not in ("all", *GPUS):
        raise UsageError(f"gpu={o['gpu']!r} is not one of {', '.join(GPUS)}, all")
    if "auto" in (o.get("bias"), o.get("targets")):
        raise UsageError(
            "bias=auto is resolved at training time from a ranking run; plan the target it picks "
            "(bias=q, k or v)"
        )
    if "ckpt" in o and "activation_checkpointing" in o:
        raise UsageError("ckpt is an alias of activation_checkpointing; give one of them")
    ints = {k: _coerce(o[k], int, k) for k in ("zero", "gpus", "batch", "seq", "r") if k in o}
    flags = {k: _coerce(o[k], bool, k) for k in ("fsdp", "kv_cache", "json") if k in o}
    cfg = _train_config(
        o, ("bias", "activation_checkpointing", "ckpt", "optim", "zo_update", "zo_head")
    )
    targets = _targets(_train_config(o, ("targets",)).bias if "targets" in o else "qv").replace(
        "all", "qkvo"
    )
    offload = {"true": "all", "false": "none"}.get(
        o.get("offload", "none"), o.get("offload", "none")
    )
    setup = Setup(
        dtype=DTYPES[o.get("dtype", "bf16")],
        zero=ints.get("zero", 0),
        fsdp=flags.get("fsdp", False),
        offload=offload,
        gpus=ints.get("gpus", 1),
        batch=ints.get("batch", 1),
        seq=ints.get("seq", 512),
        kernel=o.get("kernel", "flash"),
        optim=cfg.optim.kind,
        zo_update=cfg.zo.update,
        zo_head=cfg.zo.head,
        ckpt=cfg.activation_checkpointing,
        kv_cache=flags.get("kv_cache", False),
    )
    method = Method.parse(o.get("method", "bias"), _targets(cfg.bias), ints.get("r", 8), targets)
    p = plan(load_arch(o["model"], read=lambda name: model_config(name, BUILTIN)), method, setup)
    gpus = list(GPUS) if o.get("gpu") == "all" else ([o["gpu"]] if o.get("gpu") else [])
    if flags.get("json"):
        p["fits"] = {g: fits(p["peak"], g)[0] for g in gpus}
        emit(p)
        return 0
    print(format_plan(o["model"], method, setup, p, gpus[0] if len(gpus) == 1 else None))
    if len(gpus) > 1:
        for g in gpus:
            ok, usable = fits(p["peak"], g)
            print(
                f"  {g:<8} {'fits' if ok else 'does NOT fit'} ({p['peak'] / GB:.1f} of {usable:.1f}"
                " GB usable)"
            )
    return 0


main = json_command(__doc__, _main)
