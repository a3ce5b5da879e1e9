"""Put a reparametrised update on every selected bias.

`apply_reparam` freezes each selected bias at its pretrained value b0 and attaches a BiasDelta
module (`<layer>.beft_reparam`) whose output a forward hook adds to the layer's output. The delta
modules' tensors are the only bias-side tensors that train. Plain submodules and a hook, no
parametrization: DeepSpeed ZeRO-3 and FSDP2 shard and gather the delta parameters like any
other, and 8-bit layers are not touched. `effective_biases` computes b0 + delta from full copies
of the trained tensors, for the bias adapter: the core format, so `load_adapter` needs no reparam
code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..bias.selection import BiasSelection, numel
from ..config import REPARAM_METHODS as KINDS
from ..counts import Counts
from .modules import BiasDelta, DoRA, LoRA, PiSSA, VeRA, VeRA1d, add_delta_hook
from .shape import factor

PREFIX = "beft_reparam"


@dataclass
class Reparam:
    kind: str
    selection: BiasSelection
    modules: dict[str, BiasDelta]  # bias parameter name -> its delta module
    shapes: dict[str, tuple[int, int]]  # bias parameter name -> (r1, r2)
    params: dict[str, nn.Parameter] = field(default_factory=dict)  # trainable, by model name

    def counts(self, total: int) -> Counts:
        """Trainable reparam parameters per target, the head apart; total = the base model's
        size."""
        per_target: dict[str, int] = {}
        target_of = {s.param_name: "+".join(s.targets) for s in self.selection.sites}
        for name, mod in self.modules.items():
            t = target_of.get(name, "other")
            per_target[t] = per_target.get(t, 0) + sum(p.numel() for p in mod.parameters())
        return Counts(
            total,
            per_target,
            head=sum(numel(p) for p in self.selection.head.values()),
            reparam={
                "kind": self.kind,
                "shapes": sorted({f"{a}x{b}" for a, b in self.shapes.values()}),
            },
        )

    def effective_biases(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The biases the model uses (b0 + delta) and the head, keyed like a bias adapter, from
        `state`: full copies of the trainable tensors by name (Trainer: backend.full_state)."""
        out = {}
        for bias_name, mod in self.modules.items():
            prefix = f"{bias_name.rsplit('.', 1)[0]}.{PREFIX}.inner."
            p = {
                n[len(prefix) :]: t.detach().float().cpu()
                for n, t in state.items()
                if n.startswith(prefix)
            }
            out[bias_name] = mod.effective(p).detach().to("cpu", copy=True)
        out.update({n: state[n].detach().to("cpu", copy=True) for n in self.selection.head})
        return out


def _shared(cache: dict, key, make):
    if key not in cache:
        cache[key] = make()
    return cache[key]


def build_module(kind: str, b0: torch.Tensor, cfg, gen: torch.Generator, cache: dict):
    """The delta module for one bias vector b0 (n,): cfg is the config's `reparam` section."""
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
        A, B = _shared(
            cache,
            ("vera", r1, r2, vr),
            lambda: (
                torch.randn(vr, r2, generator=gen).div(r2**0.5).to(b0),  # (r, r2)
                torch.randn(r1, vr, generator=gen).div(vr**0.5).to(b0),
            ),
        )  # (r1, r)
        return VeRA(b0, A, B), (r1, r2)
    if kind == "vera1d":
        u = _shared(
            cache,
            ("vera1d", n),
            lambda: (lambda x: x / x.pow(2).mean().sqrt())(torch.randn(n, generator=gen)).to(b0),
        )
        return VeRA1d(b0, u), (1, n)
    raise ValueError(f"unknown reparametrisation {kind!r}; known: {', '.join(KINDS)}")


def _read_local(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", dtype=torch.float32, copy=True) for n, p in params.items()}


def apply_reparam(
    model: nn.Module,
    selection: BiasSelection,
    kind: str,
    cfg,
    read_full: Callable[[dict], dict] | None = None,
) -> Reparam:
    """Reparametrise every bias of `selection` (made by apply_bias; its biases hold b_0).
    read_full(params) returns full CPU copies: the backend's full_state under ZeRO-3, whose
    local tensors are shards; by default the tensors themselves."""
    gen = torch.Generator().manual_seed(cfg.seed)
    index_of = {s.param_name: s.index for s in selection.sites if s.partial}
    biases = selection.bias_parameters()
    b0_full = (read_full or _read_local)(biases)
    modules, shapes, cache = {}, {}, {}
    for name, bias in biases.items():
        owner = model.get_submodule(name.rsplit(".", 1)[0])
        idx = index_of.get(name)
        full = b0_full[name].to(dtype=bias.dtype)  # (out,) on CPU
        b0 = full if idx is None else full[idx.cpu()]
        inner, shapes[name] = build_module(kind, b0, cfg, gen, cache)
        delta = BiasDelta(inner, full, None if idx is None else idx.cpu()).to(bias.device)
        owner.add_module(PREFIX, delta)
        owner.register_forward_hook(add_delta_hook)
        bias.requires_grad_(False)
        modules[name] = delta
    selection.initial = {n: t.clone() for n, t in b0_full.items()}
    rp = Reparam(kind, selection, modules, shapes)
    rp.params = {n: p for n, p in model.named_parameters() if f".{PREFIX}." in n}
    return rp
