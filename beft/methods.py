"""What trains: each `method` of the config turns a loaded model into a set of trainable
parameters. The training loop only sees a MethodSetup; new methods register here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .bias import apply_bias
from .bias.selection import BiasSelection, numel


@dataclass
class MethodSetup:
    params: dict[str, torch.Tensor]            # what the optimizer updates, by name
    counts: dict                               # trainable report (see BiasSelection.counts)
    selection: BiasSelection | None = None     # set when the result is a bias adapter
    after_step: Callable[[], None] | None = None   # e.g. restore frozen fused slices (1 process)
    trains: bool = True                        # False: evaluation only (zero-shot, ICL)
    notes: list[str] = field(default_factory=list)


def _full(model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    for p in model.parameters():
        p.requires_grad_(True)
    total = sum(numel(p) for p in model.parameters())
    return MethodSetup(dict(model.named_parameters()),
                       {"per_target": {}, "bias": 0, "head": 0, "trainable": total, "total": total,
                        "bias_per_mille": 0.0})


def _bias(model: nn.Module, cfg, head: list[str], targets: str | None = None) -> MethodSetup:
    sel = apply_bias(model, targets or cfg.bias, patterns=cfg.bias_patterns or None, head=head)
    if cfg.quant != "none":
        from .backends import quant
        quant.zero_added_biases(sel)
    return MethodSetup(sel.trainable_parameters(), sel.counts(model), selection=sel,
                       after_step=sel.restore_frozen_slices if sel.frozen_slices else None)


METHODS: dict[str, Callable[..., MethodSetup]] = {
    "bias": _bias,                                               # the targets in cfg.bias
    "bitfit": lambda model, cfg, head: _bias(model, cfg, head, targets="all"),
    "full": _full,
}


def build(name: str, model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name](model, cfg, head)
