"""Where the attention projections live in each supported model family.

A family maps each target (q, k, v, o) to the suffix of the projection module's name inside a
layer. Fused projections (one Linear computing q, k and v together) also say which output
features of the fused layer belong to each target.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

TARGETS = ("q", "k", "v", "o")

# fused layout: (config, out_features) -> {target: LongTensor of output indices}
Layout = Callable[[object, int], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Family:
    name: str
    projections: dict[str, str]            # target -> module-name suffix (fused targets share one)
    native: frozenset[str] = frozenset()   # targets whose projections have a bias in the pretrained model
    fused_layout: Layout | None = None     # set when q/k/v share one module
    merge_flag: str | None = None          # config attribute that gives every projection a bias
    merge_flag_targets: frozenset[str] = frozenset()  # projections that the flag gives a bias
    peft_supported: bool = True

    def suffix(self, target: str) -> str:
        return self.projections[target]

    def is_fused(self, target: str) -> bool:
        return self.fused_layout is not None and target in ("q", "k", "v")


def _neox_layout(config, out_features: int) -> dict[str, torch.Tensor]:
    # GPT-NeoX views the fused output as (..., n_heads, 3 * head_size) and chunks the last dim,
    # so q, k, v are interleaved per head: [q_0 k_0 v_0 | q_1 k_1 v_1 | ...].
    n_heads = config.num_attention_heads
    hs = out_features // (3 * n_heads)
    base = torch.arange(n_heads).unsqueeze(1) * 3 * hs          # (n_heads, 1)
    return {t: (base + i * hs + torch.arange(hs)).reshape(-1)  # (n_heads * hs,)
            for i, t in enumerate(("q", "k", "v"))}


def _phi3_layout(config, out_features: int) -> dict[str, torch.Tensor]:
    # Phi-3 concatenates [q (n_heads*hd) | k (n_kv*hd) | v (n_kv*hd)].
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    hd = out_features // (n_heads + 2 * n_kv)
    q_end, k_end = n_heads * hd, (n_heads + n_kv) * hd
    return {"q": torch.arange(0, q_end), "k": torch.arange(q_end, k_end),
            "v": torch.arange(k_end, out_features)}


_QKVO = frozenset(TARGETS)
_DECODER = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj"}
_BERT = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
         "o": "attention.output.dense"}

FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("bert", _BERT, native=_QKVO),
    Family("roberta", _BERT, native=_QKVO),
    Family("mpnet", {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v",
                     "o": "attention.attn.o"}, native=_QKVO),
    Family("opt", {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                   "o": "self_attn.out_proj"}, native=_QKVO),
    Family("llama", _DECODER, merge_flag="attention_bias", merge_flag_targets=_QKVO),
    Family("mistral", _DECODER),
    Family("qwen2", _DECODER, native=frozenset("qkv")),
    Family("gptj", {"q": "attn.q_proj", "k": "attn.k_proj", "v": "attn.v_proj", "o": "attn.out_proj"}),
    Family("gpt_neox", {"q": "attention.query_key_value", "k": "attention.query_key_value",
                        "v": "attention.query_key_value", "o": "attention.dense"},
           native=_QKVO, fused_layout=_neox_layout, merge_flag="attention_bias",
           merge_flag_targets=_QKVO),
    Family("phi3", {"q": "self_attn.qkv_proj", "k": "self_attn.qkv_proj", "v": "self_attn.qkv_proj",
                    "o": "self_attn.o_proj"}, fused_layout=_phi3_layout),
]}


class UnsupportedModelError(ValueError):
    pass


def custom_family(patterns: dict[str, str]) -> Family:
    """A family from user-given regular expressions (matched against full module names)."""
    bad = sorted(set(patterns) - set(TARGETS))
    if bad:
        raise ValueError(f"bias patterns name unknown targets {bad}; use some of {list(TARGETS)}")
    return Family("custom", {t: p for t, p in patterns.items()}, peft_supported=True)


def detect_family(model: nn.Module, patterns: dict[str, str] | None = None) -> Family:
    if patterns:
        return custom_family(patterns)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    raise UnsupportedModelError(
        f"model type {model_type!r} is not a supported family ({', '.join(sorted(FAMILIES))}); "
        "name its projection modules yourself, e.g. bias_patterns='v=.*attn\\.v_proj$'")


def find_projections(model: nn.Module, family: Family, target: str) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Linear-like projection for `target`, in model order."""
    if family.name == "custom":
        rx = re.compile(family.projections[target])
        match = lambda n: rx.fullmatch(n) is not None  # noqa: E731
    else:
        suffix = "." + family.suffix(target)
        match = lambda n: n.endswith(suffix) or n == suffix[1:]  # noqa: E731
    found = [(n, m) for n, m in model.named_modules() if match(n) and hasattr(m, "out_features")]
    if not found:
        raise UnsupportedModelError(
            f"no {target!r} projection found in this {family.name} model (looked for "
            f"{family.projections[target]!r}); check the model type or bias patterns")
    return found
