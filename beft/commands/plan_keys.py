"""The planner reads the training config's vocabulary: its keys, its flags and a run's config.yaml.

    beft plan model=llama2-7b bias=v precision=bf16 batch_size=32 data.max_length=512 gpus=8 --config ds_configs/zero3.json
    beft plan --recipe runs/x/config.yaml gpus=8 gpu=a100-80

Training keys become the planner's own options (beft/commands/plan.py): batch_size (global: all
ranks x optim.grad_accum) -> batch per GPU; data.max_length -> seq; precision / quant (or
--load_in_8bit / --load_in_4bit) -> dtype; --config DS.json -> zero (its zero_optimization.stage)
and offload (its offload_* devices); --fsdp -> fsdp; optim.kind, zo.update, zo.head,
activation_checkpointing, bias, model; method as in training (bias, bitfit, full; peft_lora: LoRA
on the weights, r=peft.lora_r unless r= is given; lora/vera/vera1d/dora/pissa reparametrise the bias
vectors, so they plan as method=bias, and r= / targets= with them is an error).
The planner's older spellings (batch=, seq=, dtype=, zero=, fsdp=) still work; one of them given
together with the training key it stands for is a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..cli import UsageError
from ..config import REPARAM_METHODS, ConfigError, _coerce, load_config
from .flags import parse_flags

# planner option -> the training keys (or flags) that say the same, given on one command line
SAME = {
    "batch": ("batch_size",),
    "seq": ("data.max_length",),
    "dtype": ("precision", "quant"),
    "zero": ("backend", "deepspeed_config"),
    "fsdp": ("backend", "deepspeed_config"),
}
PLAN_METHODS = ("full", "bias", "bitfit", "all")  # any other method= is read by the training config
DTYPE = {
    "8bit": "8bit",
    "4bit": "4bit",
    "fp32": "fp32",
    "bf16": "bf16",
    "fp16": "fp16",
    "auto": "bf16",
}


def plan_options(argv: list[str], plan_keys: set[str]) -> dict[str, str]:
    """argv (planner options, training keys, flags, --recipe) -> the planner's options."""
    args = parse_flags(argv)
    own = [
        a
        for a in args.overrides
        if (a.split("=", 1)[0] in plan_keys and not _training_method(a)) or "=" not in a
    ]
    train = [a for a in args.overrides if a not in own]
    from ..cli import parse_kv

    opts = parse_kv(own)
    if not (args.recipe or train or args.fixed):
        return opts
    given = {a.split("=", 1)[0] for a in train} | set(args.fixed)
    for old, new in SAME.items():
        clash = [k for k in new if k in given]
        if old in opts and clash:
            raise UsageError(
                f"{old}={opts[old]} and {clash[0]} say the same thing; give one of them"
            )
    try:
        cfg = load_config(args.recipe, train, **args.fixed)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.recipe:
        given |= _keys(yaml.safe_load(Path(args.recipe).read_text()) or {})
    planned = _from_config(cfg, given, opts)
    if cfg.method in REPARAM_METHODS:
        for key in ("r", "targets"):
            if key in opts:
                raise UsageError(
                    f"{key}={opts[key]}: method={cfg.method} reparametrises the bias vectors (as "
                    "in training, reparam.*); LoRA on the weights is method=peft_lora"
                )
    return {**planned, **opts}


def _training_method(arg: str) -> bool:
    """method=peft_lora, lora, vera, ...: a training method the planner maps (its own: full, bias,
    bitfit)."""
    key, _, value = arg.partition("=")
    return key == "method" and value.lower() not in PLAN_METHODS


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= (
            _keys(v, f"{prefix}{k}.")
            if isinstance(v, dict) and k != "bias_patterns"
            else {prefix + k}
        )
    return out


def _from_config(cfg, given: set[str], opts: dict[str, str]) -> dict[str, str]:
    """The planner options that the given training keys set."""
    out: dict[str, str] = {}
    if "model" in given:
        out["model"] = cfg.model
    if "batch_size" in given:
        gpus, accum = _coerce(opts.get("gpus", 1), int, "gpus"), cfg.optim.grad_accum
        if cfg.batch_size % (gpus * accum):
            raise UsageError(
                f"batch_size={cfg.batch_size} is not divisible by gpus={gpus} x "
                f"optim.grad_accum={accum} (batch_size is the global batch, as in training)"
            )
        out["batch"] = str(cfg.batch_size // (gpus * accum))
    if "data.max_length" in given:
        out["seq"] = str(cfg.data.max_length)
    if cfg.quant != "none" or {"precision", "quant"} & given:
        out["dtype"] = DTYPE[cfg.quant if cfg.quant != "none" else cfg.precision]
    if cfg.backend == "fsdp":
        out["fsdp"] = "true"
    if cfg.backend == "deepspeed":
        out.update(_deepspeed(cfg.deepspeed_config))
    for key, plan_key in (
        ("optim.kind", "optim"),
        ("zo.update", "zo_update"),
        ("zo.head", "zo_head"),
        ("activation_checkpointing", "activation_checkpointing"),
        ("bias", "bias"),
    ):
        if key in given:
            value = cfg
            for part in key.split("."):
                value = getattr(value, part)
            out[plan_key] = str(value).lower()
    if "method" in given:
        out.update(_method(cfg))
    return out


def _deepspeed(path: str) -> dict[str, str]:
    """zero (stage) and offload from a DeepSpeed JSON config."""
    try:
        ds = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--config {path}: cannot read it as DeepSpeed JSON ({e})") from None
    zero = ds.get("zero_optimization", {}) if isinstance(ds, dict) else {}
    if not isinstance(zero, dict):
        raise UsageError(f"--config {path}: zero_optimization must be a JSON object")
    moved = [
        k
        for k in ("optimizer", "param")
        if (zero.get(f"offload_{k}") or {}).get("device", "none") not in ("none", None)
    ]
    return {
        "zero": str(zero.get("stage", 0)),
        "offload": "all" if len(moved) == 2 else (moved[0] if moved else "none"),
    }


def _method(cfg) -> dict[str, str]:
    if cfg.method in ("bias", "bitfit", "full"):
        return {"method": cfg.method}
    if cfg.method == "peft_lora":
        return {"method": "peft_lora", "r": str(cfg.peft.lora_r), "targets": "qv"}
    if (
        cfg.method in REPARAM_METHODS
    ):  # the trained tensors are as small as the bias they reparametrise
        return {"method": "bias"}
    raise UsageError(
        f"method={cfg.method}: the planner models bias, bitfit, full, peft_lora and the bias "
        "reparametrisations, not this method"
    )
