"""Bias updates through LoRA / VeRA / VeRA-1d / DoRA / PiSSA on the reshaped bias vector."""

from .apply import KINDS, Reparam, apply_reparam, build_module
from .shape import factor

__all__ = ["KINDS", "Reparam", "apply_reparam", "build_module", "factor"]
