"""Bias selection, injection, freezing, and bias adapters."""

from .families import FAMILIES, TARGETS, Family, UnsupportedModelError, detect_family
from .inject import add_zero_bias, apply_bias, parse_targets
from .selection import BiasSelection, BiasSite, in_head, numel

__all__ = [
    "FAMILIES",
    "TARGETS",
    "Family",
    "UnsupportedModelError",
    "detect_family",
    "add_zero_bias",
    "apply_bias",
    "parse_targets",
    "BiasSelection",
    "BiasSite",
    "in_head",
    "numel",
]
