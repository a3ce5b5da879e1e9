"""The learning rate of a run that sets none (lr unset, or lr=null): chosen by what trains.

A few thousand bias values need a far larger AdamW step than 22 M pretrained weights: one lr for
every method (the old 1e-3) left `model=minilm task=sst2 bias=v` at the majority class. The values
come from lr grids on the real all-MiniLM-L6-v2 on SST-2, low regime, and the project's earlier
bench runs (MiniLM, SmolLM2-135M); docs/defaults.md has the figures, the machine and the date.
TrainConfig.validate resolves lr once and config.yaml records the number, so a run repeats
exactly; an explicit lr (recipe or key=value) always wins.
"""

from __future__ import annotations

from .config import ConfigError

BIAS = 3e-2  # bias targets (method=bias, rand_uniform) of an encoder; its new head shares the lr
REPARAM = 3e-2  # lora / vera / vera1d / dora / pissa over an encoder's bias deltas
DECODER_BIAS = (
    1e-2  # the same on a decoder (prompt log-likelihoods; bias-free models start from zero
)
# biases): SmolLM2-135M b_v learned at 1e-2 and fell below the majority class at
# 3e-2 (docs/defaults.md); also where the architecture cannot be read (safe side)
BITFIT = 1e-2  # every bias of the model (method=bitfit)
FULL = 5e-5  # every weight (method=full)
PEFT_LORA = 1e-3  # peft's LoRA on the q and v projections
PREFIX = 1e-2  # peft prefix tuning (not shown to learn at any lr yet: docs/defaults.md)
ZO = 1e-2  # optim.kind=zo, any method and zo.update (the first-order head's AdamW uses it too)

# AdamW (optim.kind=adamw) by method; icl and zero_shot train nothing (their lr is never used)
BY_METHOD = {
    "bias": BIAS,
    "rand_uniform": BIAS,
    "bitfit": BITFIT,
    "full": FULL,
    "lora": REPARAM,
    "vera": REPARAM,
    "vera1d": REPARAM,
    "dora": REPARAM,
    "pissa": REPARAM,
    "peft_lora": PEFT_LORA,
    "prefix": PREFIX,
    "icl": BIAS,
    "zero_shot": BIAS,
}


BY_ARCH = (
    "bias",
    "rand_uniform",
    "lora",
    "vera",
    "vera1d",
    "dora",
    "pissa",
)  # differ by architecture


def default_lr(method: str, optim_kind: str = "adamw", arch: str | None = "encoder") -> float:
    """The lr for `method` under `optim_kind` (adamw | zo) on `arch` (encoder | decoder | None:
    unknown) when the user set none."""
    if optim_kind == "zo":
        return ZO
    if method not in BY_METHOD:
        raise ConfigError(
            f"method={method} has no default lr in beft/defaults.py; set lr=... "
            "(or add the method there, with its measurement in docs/defaults.md)"
        )
    if method in BY_ARCH and arch != "encoder":
        return DECODER_BIAS
    return BY_METHOD[method]


def model_arch(name: str) -> str | None:
    """encoder | decoder from the model's config.json, None where it cannot be read here (local
    folders, short names, .gguf files and the hub cache only: validating a config never waits on
    the network)."""
    from transformers import AutoConfig

    from .models import resolve, resolve_arch

    try:
        config = AutoConfig.from_pretrained(resolve(name), local_files_only=True)
    except (OSError, ValueError):
        return None
    return resolve_arch("auto", config)
