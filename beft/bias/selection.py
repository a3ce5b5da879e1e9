"""Which bias entries train: the result of selecting targets on a model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..counts import Counts
from .detect import out_features


def numel(p: torch.Tensor) -> int:
    """Full element count, also for ZeRO-3 partitioned (ds_numel) and 4-bit packed parameters."""
    if hasattr(p, "ds_numel"):
        return int(p.ds_numel)
    qs = getattr(p, "quant_state", None)
    if qs is not None and getattr(qs, "shape", None) is not None:
        return int(torch.Size(qs.shape).numel())
    return int(p.numel())


def in_head(name: str, head: Iterable[str]) -> bool:
    """The parameter `name` belongs to the new task head: it is one of the `head` module names or
    lies under one ('classifier' holds 'classifier.dense.weight', not 'classifier2.weight')."""
    return any(name == h or name.startswith(h + ".") for h in head)


@dataclass
class BiasSite:
    """One selected projection (a fused projection may serve several targets)."""

    name: str  # module name, e.g. "model.layers.0.self_attn.v_proj"
    module: nn.Module
    counts: dict[str, int]  # target -> trainable entries on this module
    added: bool  # the bias was created by beft (zero-initialised)
    index: torch.Tensor | None = None  # trainable output features of a fused layer; None = all

    @property
    def param_name(self) -> str:
        return f"{self.name}.bias"

    @property
    def partial(self) -> bool:
        """Only some entries of the layer's (fused) bias are selected."""
        return self.index is not None and self.index.numel() < out_features(self.module)

    @property
    def targets(self) -> list[str]:
        return list(self.counts)


@dataclass
class BiasSelection:
    family: str
    targets: list[str]
    sites: list[BiasSite]
    extra: dict[str, nn.Parameter] = field(default_factory=dict)  # other native biases ('all')
    head: dict[str, nn.Parameter] = field(default_factory=dict)  # newly created task head
    head_modules: list[str] = field(default_factory=list)  # its module-name prefixes
    frozen_slices: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor | None]] = field(
        default_factory=list
    )
    initial: dict[str, torch.Tensor] = field(
        default_factory=dict
    )  # b_0 of every trained bias, on CPU

    def bias_parameters(self) -> dict[str, nn.Parameter]:
        params = {s.param_name: s.module.bias for s in self.sites}
        params.update(self.extra)
        return params

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Everything the optimizer updates: biases first, then the task head."""
        return {**self.bias_parameters(), **self.head}

    @property
    def added(self) -> list[str]:
        return [s.param_name for s in self.sites if s.added]

    def restore_frozen_slices(self) -> None:
        """Put back the non-selected entries of fused biases after an optimizer step (weight
        decay would otherwise move them even though their gradient is masked to zero)."""
        with torch.no_grad():
            for param, idx, values in self.frozen_slices:
                if values is not None:
                    param[idx.to(param.device)] = values.to(param.device, param.dtype)

    def counts(self, model: nn.Module) -> Counts:
        """Trainable parameters: per target, biases, head, and per-mille of the whole model."""
        per_target: dict[str, int] = {}
        for s in self.sites:
            for t, n in s.counts.items():
                per_target[t] = per_target.get(t, 0) + n
        if self.extra:
            per_target["other"] = sum(numel(p) for p in self.extra.values())
        return Counts(
            sum(numel(p) for p in model.parameters()),
            per_target,
            head=sum(numel(p) for p in self.head.values()),
        )
