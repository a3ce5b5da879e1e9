"""Where the attention projections live in a model family.

A family maps each target (q, k, v, o) to the suffix of the projection module's name inside a
layer (the ten tested families below) or to a regex over module names (user patterns, and the
families of every other transformer, detected from its structure by beft/bias/detect.py).
Fused projections (one Linear computing q, k and v together) also say which output features
of the fused layer belong to each target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .detect import (
    FUSED_LAYOUTS,
    UNSPLITTABLE,
    concat_layout,
    find_blocks,
    is_projection,
    out_features,
    per_head_layout,
    suffix,
)

TARGETS = ("q", "k", "v", "o")

# fused layout: (config, out_features) -> {target: LongTensor of output indices}
Layout = Callable[[object, int], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Family:
    name: str
    projections: dict[str, str]  # target -> module-name suffix (fused targets share one)
    native: frozenset[str] = (
        frozenset()
    )  # targets whose projections have a bias in the pretrained model
    fused_layout: Layout | None = None  # set when q/k/v share one module
    merge_flag: str | None = None  # config attribute that gives every projection a bias
    merge_flag_targets: frozenset[str] = frozenset()  # projections that the flag gives a bias
    peft_supported: bool = True
    regex: bool = False  # projections are regexes over full module names

    def suffix(self, target: str) -> str:
        return self.projections[target]

    def is_fused(self, target: str) -> bool:
        return self.fused_layout is not None and target in ("q", "k", "v")


_QKVO = frozenset(TARGETS)
_DECODER = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
}
_BERT = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("bert", _BERT, native=_QKVO),
        Family("roberta", _BERT, native=_QKVO),
        Family(
            "mpnet",
            {
                "q": "attention.attn.q",
                "k": "attention.attn.k",
                "v": "attention.attn.v",
                "o": "attention.attn.o",
            },
            native=_QKVO,
        ),
        Family(
            "opt",
            {
                "q": "self_attn.q_proj",
                "k": "self_attn.k_proj",
                "v": "self_attn.v_proj",
                "o": "self_attn.out_proj",
            },
            native=_QKVO,
        ),
        Family("llama", _DECODER, merge_flag="attention_bias", merge_flag_targets=_QKVO),
        Family("mistral", _DECODER),
        Family("qwen2", _DECODER, native=frozenset("qkv")),
        Family(
            "gptj",
            {"q": "attn.q_proj", "k": "attn.k_proj", "v": "attn.v_proj", "o": "attn.out_proj"},
        ),
        Family(
            "gpt_neox",
            {
                "q": "attention.query_key_value",
                "k": "attention.query_key_value",
                "v": "attention.query_key_value",
                "o": "attention.dense",
            },
            native=_QKVO,
            fused_layout=per_head_layout,
            merge_flag="attention_bias",
            merge_flag_targets=_QKVO,
        ),
        Family(
            "phi3",
            {
                "q": "self_attn.qkv_proj",
                "k": "self_attn.qkv_proj",
                "v": "self_attn.qkv_proj",
                "o": "self_attn.o_proj",
            },
            fused_layout=concat_layout,
        ),
    ]
}


class UnsupportedModelError(ValueError):
    pass


def custom_family(patterns: dict[str, str]) -> Family:
    """A family from user-given regular expressions (matched against full module names)."""
    bad = sorted(set(patterns) - set(TARGETS))
    if bad:
        raise ValueError(f"bias patterns name unknown targets {bad}; use some of {list(TARGETS)}")
    return Family("custom", {t: p for t, p in patterns.items()}, peft_supported=True, regex=True)


def _any_suffix(names: list[str]) -> str:
    """A regex matching exactly the module names that end in one of these layer-relative
    suffixes."""
    alts = sorted({re.escape(suffix(n)) for n in names})
    return rf"(?:.*\.)?(?:{'|'.join(alts)})"


def detected_family(model: nn.Module) -> Family:
    """The family of any transformer, from its module structure and head counts."""
    config = getattr(model, "config", None)
    name = getattr(config, "model_type", None) or type(model).__name__
    blocks = find_blocks(model)
    if not blocks:
        raise UnsupportedModelError(
            f"no attention projection found in {type(model).__name__} (model type {name!r}): no"
            " module has query, key and value children (q_proj/k_proj/v_proj, query/key/value,"
            " ...) or a fused query_key_value/qkv_proj/Wqkv/c_attn; name them with"
            " bias_patterns='v=<regex over module names>'"
        )
    if len({b.fused for b in blocks}) > 1:
        raise UnsupportedModelError(
            f"{name} mixes fused and separate q/k/v projections ({blocks[0].q}, ...); "
            "name the ones to train with bias_patterns"
        )
    layout = None
    if blocks[0].fused:
        if name in UNSPLITTABLE:
            raise UnsupportedModelError(
                f"{name}: {UNSPLITTABLE[name]}, so its fused {blocks[0].q} cannot be "
                "split into q, k and v; train bias=all or name a module with bias_patterns"
            )
        layout = FUSED_LAYOUTS.get(name, concat_layout)
        try:
            layout(config, out_features(dict(model.named_modules())[blocks[0].q]))
        except (ValueError, AttributeError) as e:
            raise UnsupportedModelError(
                f"{name}: {blocks[0].q}: {e}; name its projections with bias_patterns"
            ) from None
    projections = {t: _any_suffix([getattr(b, t) for b in blocks]) for t in ("q", "k", "v")}
    if all(b.o for b in blocks):
        projections["o"] = _any_suffix([b.o for b in blocks])
    flag = "attention_bias" if isinstance(getattr(config, "attention_bias", None), bool) else None
    return Family(
        name,
        projections,
        fused_layout=layout,
        merge_flag=flag,
        merge_flag_targets=frozenset(projections) if flag else frozenset(),
        regex=True,
    )


def detect_family(model: nn.Module, patterns: dict[str, str] | None = None) -> Family:
    """User patterns, else the tested family of this model type, else one detected from the
    model's structure (UnsupportedModelError where no attention projection is found)."""
    if patterns:
        return custom_family(patterns)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    return detected_family(model)


def find_projections(model: nn.Module, family: Family, target: str) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Linear-like projection for `target`, in model order."""
    if target not in family.projections:
        raise UnsupportedModelError(
            f"this {family.name} model has no {target!r} projection that beft can "
            f"identify (found {', '.join(family.projections)}); choose other targets "
            "or name it with bias_patterns"
        )
    if family.regex:
        rx = re.compile(family.projections[target])
        match = lambda n: rx.fullmatch(n) is not None  # noqa: E731
    else:
        tail = "." + family.suffix(target)
        match = lambda n: n.endswith(tail) or n == tail[1:]  # noqa: E731
    found = [(n, m) for n, m in model.named_modules() if match(n) and is_projection(m)]
    if not found:
        raise UnsupportedModelError(
            f"no {target!r} projection found in this {family.name} model (looked for "
            f"{family.projections[target]!r}); check the model type or bias patterns"
        )
    return found
