"""Select bias targets on a model: add zero biases where missing, freeze everything else."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .detect import out_features
from .families import TARGETS, detect_family, find_projections
from .selection import BiasSelection, BiasSite, in_head


def parse_targets(spec: str | Iterable[str]) -> list[str]:
    """'v' | 'q,v' | 'qv' | ['q', 'v'] | 'all' -> ordered list of targets ('all' stays alone)."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        item = item.strip().lower()
        if item in ("all", "bitfit"):
            return ["all"]
        parts = item.split(",") if "," in item else list(item)
        for p in (x.strip() for x in parts):
            if p not in TARGETS:
                raise ValueError(
                    f"unknown bias target {p!r} in {spec!r}; use q, k, v, o, a "
                    "combination such as 'qv', or 'all'"
                )
            if p not in out:
                out.append(p)
    if not out:
        raise ValueError("no bias target given; use q, k, v, o, a combination, or 'all'")
    return [t for t in TARGETS if t in out]


def add_zero_bias(module: nn.Module, dtype: torch.dtype | None = None) -> nn.Parameter:
    """Give a bias-free Linear a zero bias sized from its own out_features."""
    w = module.weight
    if dtype is None:
        dtype = w.dtype if w.dtype.is_floating_point else torch.float32
    # a weight on the meta device (sharded loading) gets a real zero bias: it has no checkpoint
    # value
    device = "cpu" if w.is_meta else w.device
    module.bias = nn.Parameter(torch.zeros(out_features(module), dtype=dtype, device=device))
    return module.bias


def _float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.dtype.is_floating_point:
            return p.dtype
    return torch.float32


def apply_bias(
    model: nn.Module,
    targets: str | Iterable[str],
    *,
    patterns: dict[str, str] | None = None,
    head: Iterable[str] = (),
) -> BiasSelection:
    """Make exactly the selected biases (and the named head modules) trainable.

    targets: q/k/v/o, any combination, or 'all' (every native bias plus q/k/v/o, added where the
    model has none). patterns: target -> regex over full module names, for unsupported families.
    head: module-name prefixes of a newly created task head; it trains and is counted apart.
    """
    family = detect_family(model, patterns)
    wanted = parse_targets(targets)
    proj_targets = [t for t in TARGETS if t in family.projections] if wanted == ["all"] else wanted
    sites: dict[str, BiasSite] = {}
    for t in proj_targets:
        for name, module in find_projections(model, family, t):
            site = sites.get(name)
            if site is None:
                native = module.bias is not None if family.regex else t in family.native
                if module.bias is None:
                    add_zero_bias(
                        module,
                        dtype=(
                            None if module.weight.dtype.is_floating_point else _float_dtype(model)
                        ),
                    )
                site = sites[name] = BiasSite(name, module, {}, added=not native)
            if family.is_fused(t):
                idx = family.fused_layout(model.config, out_features(module))[t]
                site.index = idx if site.index is None else torch.cat([site.index, idx]).unique()
                site.counts[t] = int(idx.numel())
            else:
                site.counts[t] = out_features(module)

    head_prefixes = tuple(head)
    for p in model.parameters():
        p.requires_grad_(False)
    selection = BiasSelection(
        family.name, wanted, list(sites.values()), head_modules=list(head_prefixes)
    )
    for name, p in model.named_parameters():
        if in_head(name, head_prefixes):
            selection.head[name] = p
        elif (
            wanted == ["all"] and name.endswith(".bias") and name not in selection.bias_parameters()
        ):
            selection.extra[name] = p
    for p in selection.trainable_parameters().values():
        p.requires_grad_(True)
    selection.initial = {
        n: p.detach().to("cpu", copy=True)
        for n, p in selection.bias_parameters().items()
        if not hasattr(p, "ds_numel") and not p.is_meta
    }  # ZeRO-3: the backend fills it gathered
    for site in selection.sites:
        if site.partial:
            _mask_fused(selection, site)
    return selection


def _mask_fused(selection: BiasSelection, site: BiasSite) -> None:
    """Only the selected entries of a fused bias train: its gradient is masked (the mask follows
    the gradient's device and dtype: the model may move to the GPU or to bf16 after this), and
    the frozen values are kept to be put back after each step (weight decay). A ZeRO-3 partition
    holds no values here (the trainer refuses first-order training of it)."""
    bias = site.module.bias
    mask = torch.zeros(out_features(site.module), dtype=torch.bool)
    mask[site.index] = True
    frozen = (~mask).nonzero().squeeze(1)
    values = bias.detach()[frozen.to(bias.device)].clone() if bias.numel() == mask.numel() else None
    selection.frozen_slices.append((bias, frozen.to(bias.device), values))
    bias.register_hook(lambda g: g * mask.to(device=g.device, dtype=g.dtype))
