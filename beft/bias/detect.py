"""Find the attention projections of any transformer by module structure and head counts.

An attention block is a module whose children include a query, a key and a value projection
(separate, e.g. q_proj/k_proj/v_proj, query/key/value) or one fused projection
(query_key_value, qkv_proj, Wqkv, GPT-2's Conv1D c_attn). Its output projection is a sibling
(o_proj, out_proj, dense, c_proj, ...) or, BERT-style, the `output.dense` beside the block's
parent. The q/k/v slices of a fused output come from the config's head counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

_Q = {"q_proj", "query", "q", "q_lin", "wq", "project_q", "query_proj"}
_K = {"k_proj", "key", "k", "k_lin", "wk", "project_k", "key_proj"}
_V = {"v_proj", "value", "v", "v_lin", "wv", "project_v", "value_proj"}
_O = ("o_proj", "out_proj", "o", "out_lin", "dense", "c_proj", "wo", "project_out")
_FUSED = {"query_key_value", "qkv_proj", "wqkv", "c_attn", "qkv"}
_LAYER_INDEX = re.compile(r"^(?:.*\.)?\d+\.")


def out_features(module: nn.Module) -> int:
    """Output size of a Linear-like layer; GPT-2's Conv1D stores its weight as (in, out)."""
    n = getattr(module, "out_features", None)
    if n is not None:
        return int(n)
    return int(getattr(module, "nf", None) or module.weight.shape[1])


def is_projection(module: nn.Module) -> bool:
    """A Linear-like layer: nn.Linear and its quantised/sharded variants, or a Conv1D."""
    if hasattr(module, "out_features") and hasattr(module, "weight"):
        return True
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def head_counts(config) -> tuple[int, int, int | None]:
    """(query heads, key/value heads, head_dim or None) from a config's usual spellings (the text
    config of a multimodal model)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    sub = getattr(config, "attn_config", None)
    heads = (
        getattr(config, "num_attention_heads", None)
        or getattr(config, "n_head", None)
        or getattr(config, "n_heads", None)
    )
    kv = (
        getattr(config, "num_key_value_heads", None)
        or getattr(config, "num_kv_heads", None)
        or getattr(sub, "kv_n_heads", None)
    )
    if getattr(config, "multi_query", False) and not getattr(
        config, "new_decoder_architecture", False
    ):
        kv = 1  # Falcon, GPTBigCode: one key/value head whatever num_kv_heads says
    if not isinstance(heads, int) or heads <= 0:
        raise ValueError("the config gives no number of attention heads (num_attention_heads)")
    hd = getattr(config, "head_dim", None)
    return heads, int(kv or heads), hd if isinstance(hd, int) and hd > 0 else None


@dataclass
class Block:
    """One attention block: module names of its projections (fused: q, k and v share one)."""

    q: str
    k: str
    v: str
    o: str | None
    fused: bool


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower()


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def find_blocks(model: nn.Module) -> list[Block]:
    """Every attention block of the model, in model order."""
    projections = {n: m for n, m in model.named_modules() if n and is_projection(m)}
    children: dict[str, dict[str, str]] = {}
    for n in projections:
        children.setdefault(_parent(n), {})[_leaf(n)] = n
    blocks = []
    for parent, kids in children.items():
        q = next((kids[c] for c in kids if c in _Q), None)
        k = next((kids[c] for c in kids if c in _K), None)
        v = next((kids[c] for c in kids if c in _V), None)
        fused = next((kids[c] for c in kids if c in _FUSED), None)
        if not (q and k and v) and fused is None:
            continue
        o = next((kids[c] for c in _O if c in kids), None)
        if o is None:  # BERT: attention.self.{query,key,value} -> attention.output.dense
            o = projections.get(_join(_parent(parent), "output", "dense")) and _join(
                _parent(parent), "output", "dense"
            )
        if q and k and v:
            blocks.append(Block(q, k, v, o, fused=False))
        else:
            blocks.append(Block(fused, fused, fused, o, fused=True))
    return blocks


def suffix(name: str) -> str:
    """A module name relative to its numbered layer: 'model.layers.3.self_attn.q_proj' ->
    'self_attn.q_proj' (a name outside any numbered layer stays whole)."""
    return _LAYER_INDEX.sub("", name)


# ---------------------------------------------------------------------------- fused layouts
def concat_layout(config, out: int) -> dict[str, torch.Tensor]:
    """[q (heads*hd) | k (kv*hd) | v (kv*hd)]: Phi-3, GPT-2, MPT, DBRX, multi-query Falcon."""
    heads, kv, hd = head_counts(config)
    hd = hd or out // (heads + 2 * kv)
    if (heads + 2 * kv) * hd != out:
        raise ValueError(
            f"a fused q/k/v output of {out} features does not split into {heads} query "
            f"and 2 x {kv} key/value heads of {hd}"
        )
    q_end, k_end = heads * hd, (heads + kv) * hd
    return {
        "q": torch.arange(0, q_end),
        "k": torch.arange(q_end, k_end),
        "v": torch.arange(k_end, out),
    }


def per_head_layout(config, out: int) -> dict[str, torch.Tensor]:
    """q, k, v interleaved per head: [q_0 k_0 v_0 | q_1 k_1 v_1 | ...] (GPT-NeoX, BLOOM,
    Persimmon)."""
    heads = head_counts(config)[0]
    hs = out // (3 * heads)
    if 3 * heads * hs != out:
        raise ValueError(
            f"a fused q/k/v output of {out} features does not split into 3 x {heads} heads"
        )
    base = torch.arange(heads).unsqueeze(1) * 3 * hs  # (heads, 1)
    return {
        t: (base + i * hs + torch.arange(hs)).reshape(-1)  # (heads * hs,)
        for i, t in enumerate(("q", "k", "v"))
    }


def grouped_layout(config, out: int) -> dict[str, torch.Tensor]:
    """Per key/value group: [q x (heads/kv) | k | v] (Falcon's new decoder architecture)."""
    heads, kv, _ = head_counts(config)
    per = heads // kv + 2
    hd = out // (kv * per)
    if kv * per * hd != out or heads % kv:
        raise ValueError(
            f"a fused q/k/v output of {out} features does not split into {kv} groups "
            f"of {heads // kv} query heads"
        )
    base = torch.arange(kv).unsqueeze(1) * per * hd  # (kv, 1)
    q = (base + torch.arange((per - 2) * hd)).reshape(-1)  # (heads * hd,)
    k = (base + (per - 2) * hd + torch.arange(hd)).reshape(-1)  # (kv * hd,)
    return {"q": q, "k": k, "v": k + hd}


def _falcon(config, out: int) -> dict[str, torch.Tensor]:
    if getattr(config, "new_decoder_architecture", False):
        return grouped_layout(config, out)
    return (
        concat_layout(config, out)
        if getattr(config, "multi_query", False)
        else per_head_layout(config, out)
    )


def _bigcode(config, out: int) -> dict[str, torch.Tensor]:
    return (
        concat_layout(config, out)
        if getattr(config, "multi_query", True)
        else per_head_layout(config, out)
    )


# The order of q, k and v inside a fused output is fixed by the model's forward code, not its
# structure: model types that do not concatenate [q | k | v] are named here (tests/bias/
# test_detect_all.py checks every fused family transformers ships against its forward).
FUSED_LAYOUTS = {
    "gpt_neox": per_head_layout,
    "gpt_neox_japanese": per_head_layout,
    "bloom": per_head_layout,
    "persimmon": per_head_layout,
    "fuyu": per_head_layout,
    "falcon": _falcon,
    "gpt_bigcode": _bigcode,
}
# Fused layouts that no head count describes (CodeGen splits its output in mp_num model-parallel
# groups).
UNSPLITTABLE = {"codegen": "CodeGen interleaves q, v and k in model-parallel groups"}
