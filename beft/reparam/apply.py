"""Put a reparametrised update on every selected bias (torch.nn.utils.parametrize).

After `apply_reparam`, `module.bias` is computed on every access from the frozen original
(`module.parametrizations.bias.original`) and the reparametrisation's parameters, which are the
only bias-side tensors that require grad. `effective_biases` reads the biases the model uses, for
the bias adapter: the core format (b_0 + delta), so `load_adapter` needs no reparam code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..bias.selection import BiasSelection, numel
from .modules import DoRA, LoRA, OnSlice, PiSSA, VeRA, VeRA1d
from .shape import factor

KINDS = ("lora", "vera", "vera1d", "dora", "pissa")


@dataclass
class Reparam:
    kind: str
    selection: BiasSelection
    modules: dict[str, nn.Module]                 # bias parameter name -> its parametrization
    shapes: dict[str, tuple[int, int]]            # bias parameter name -> (r1, r2)
    params: dict[str, nn.Parameter] = field(default_factory=dict)   # trainable, by model name

    def counts(self, total: int) -> dict:
        """Trainable reparam parameters per target, the head apart; total = the base model's size."""
        per_target: dict[str, int] = {}
        target_of = {s.param_name: "+".join(s.targets) for s in self.selection.sites}
        for name, mod in self.modules.items():
            t = target_of.get(name, "other")
            per_target[t] = per_target.get(t, 0) + sum(p.numel() for p in mod.parameters())
        bias = sum(per_target.values())
        head = sum(numel(p) for p in self.selection.head.values())
        return {"per_target": per_target, "bias": bias, "head": head, "trainable": bias + head,
                "total": total, "bias_per_mille": 1000.0 * bias / max(total, 1),
                "reparam": {"kind": self.kind, "shapes": sorted({f"{a}x{b}" for a, b in self.shapes.values()})}}

    def effective_biases(self, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The biases as the model uses them (+ the head), keyed like a bias adapter. `state`
        (trainable tensors by name, e.g. the best epoch's snapshot) is evaluated in place of the
        current values, which are put back afterwards."""
        params = {**self.params, **self.selection.head}
        saved = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            if state is not None:
                for n, p in params.items():
                    p.copy_(state[n].to(p))
            out = {n: t.detach().to("cpu", copy=True) for n, t in self.selection.trainable_parameters().items()}
            for n, p in params.items():
                p.copy_(saved[n])
        return out


def _shared(cache: dict, key, make):
    if key not in cache:
        cache[key] = make()
    return cache[key]


def build_module(kind: str, b0: torch.Tensor, cfg, gen: torch.Generator, cache: dict) -> tuple[nn.Module, tuple]:
    """The parametrization for one bias vector b0 (n,): cfg is the config's `reparam` section."""
    n = b0.numel()
    r1, r2 = factor(n, cfg.shape)
    rank = min(cfg.rank, r1, r2)
    alpha = cfg.alpha or float(rank)
    if kind == "lora":
        return LoRA(b0, (r1, r2), rank, alpha, gen), (r1, r2)
    if kind == "dora":
        return DoRA(b0, (r1, r2), rank, alpha, gen), (r1, r2)
    if kind == "pissa":
        return PiSSA(b0, (r1, r2), rank, gen), (r1, r2)
    if kind == "vera":
        vr = cfg.vera_rank or min(r1, r2)
        A, B = _shared(cache, ("vera", r1, r2, vr), lambda: (
            torch.randn(vr, r2, generator=gen).div(r2 ** 0.5).to(b0),    # (r, r2)
            torch.randn(r1, vr, generator=gen).div(vr ** 0.5).to(b0)))   # (r1, r)
        return VeRA(b0, A, B), (r1, r2)
    if kind == "vera1d":
        u = _shared(cache, ("vera1d", n), lambda: (lambda x: x / x.pow(2).mean().sqrt())(
            torch.randn(n, generator=gen)).to(b0))
        return VeRA1d(b0, u), (1, n)
    raise ValueError(f"unknown reparametrisation {kind!r}; known: {', '.join(KINDS)}")


def apply_reparam(model: nn.Module, selection: BiasSelection, kind: str, cfg) -> Reparam:
    """Reparametrise every bias of `selection` (made by apply_bias; its biases hold b_0)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    index_of = {s.param_name: s.index for s in selection.sites
                if s.index is not None and s.index.numel() < s.module.out_features}
    modules, shapes, cache = {}, {}, {}
    for name, bias in list(selection.bias_parameters().items()):
        owner = model.get_submodule(name.rsplit(".", 1)[0])
        idx = index_of.get(name)
        b0 = bias.detach() if idx is None else bias.detach()[idx.to(bias.device)]
        inner, shapes[name] = build_module(kind, b0, cfg, gen, cache)
        parametrize.register_parametrization(owner, "bias", OnSlice(inner, None if idx is None else idx.to(bias.device)))
        owner.parametrizations.bias.original.requires_grad_(False)
        modules[name] = inner
    rp = Reparam(kind, selection, modules, shapes)
    head = set(map(id, selection.head.values()))
    rp.params = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in head}
    return rp
