"""What setup refuses before training starts: each check one line naming the fix (TrainingError)."""

from __future__ import annotations

from ..models import is_encoder
from .errors import TrainingError


def check_arch(cfg, arch: str, model_cfg) -> None:
    if arch == "decoder" and is_encoder(model_cfg):
        raise TrainingError(
            f"arch=decoder: {cfg.model} is an encoder ({model_cfg.model_type}) with no causal LM "
            "head to score with; drop arch (auto) or use a decoder model"
        )


def micro_batch(cfg, world: int, n_train: int) -> int:
    """Examples per rank per forward: batch_size = world x optim.grad_accum x micro."""
    accum = cfg.optim.grad_accum
    if cfg.batch_size % (world * accum):
        raise TrainingError(
            f"batch_size={cfg.batch_size} is not divisible by world size {world} x "
            f"optim.grad_accum={accum}"
        )
    if n_train < cfg.batch_size:
        raise TrainingError(f"{n_train} training examples < batch_size={cfg.batch_size}")
    return cfg.batch_size // (world * accum)


def check_fused_slices(cfg, selection, backend) -> None:
    """A selected slice of a fused bias stays frozen by masking; a backend that shards it cannot."""
    if (
        selection is not None
        and selection.frozen_slices
        and backend.shards_parameters
        and cfg.optim.kind != "zo"
    ):
        raise TrainingError(
            f"bias={cfg.bias} selects part of a fused qkv bias ({selection.family}); "
            f"{backend.title} shards it and its other entries "
            "cannot be kept frozen there: use DeepSpeed ZeRO-2, one process, optim.kind=zo, or a "
            "target covering the whole layer (bias=qkv / all)"
        )


def check_evaluates(cfg, backend) -> None:
    if not backend.evaluates_alone:
        raise TrainingError(f"method={cfg.method} only evaluates; run it on one process")


def activation_checkpointing(cfg, model) -> None:
    if not cfg.activation_checkpointing:
        return
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise TrainingError(
            f"activation_checkpointing=true: {type(model).__name__} does not support it"
        )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
