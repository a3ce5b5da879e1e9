"""zo.subspace=K: perturb each value bias only along K directions: the right-singular vectors
of its layer's output projection with the largest singular values.

A value bias reaches the network only as W_o b_v (every attention row sums to one, so b_v adds
the same vector to every head output, which the output projection W_o maps into the residual
stream). Directions of b_v that W_o nearly annihilates barely change the loss, yet an isotropic
perturbation spends most of its variance on them. With grouped-query attention a kv head's value
feeds n_rep query heads, so its map is the sum of their W_o column blocks. The bases depend on
the frozen weights only: every rank computes the same ones from gathered copies.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..bias.families import detect_family, find_projections


def value_map(w_o: torch.Tensor, v_out: int, head_dim: int) -> torch.Tensor:
    """(hidden, v_out): how a value bias of size v_out moves the residual stream. w_o is the
    output projection's (hidden, n_heads * head_dim) weight; v_out = n_kv_heads * head_dim; query
    head h reads kv head h // n_rep (transformers' repeat_kv)."""
    w_o = w_o.float()
    if w_o.shape[1] == v_out:
        return w_o
    if w_o.shape[1] % v_out or v_out % head_dim:
        raise ValueError(
            f"zo.subspace: output projection input {w_o.shape[1]}, value size {v_out} and "
            f"head_dim {head_dim} do not fit grouped-query attention; use zo.subspace=0"
        )
    n_kv, n_rep = v_out // head_dim, w_o.shape[1] // v_out
    return w_o.reshape(w_o.shape[0], n_kv, n_rep, head_dim).sum(2).reshape(w_o.shape[0], v_out)


def top_directions(m: torch.Tensor, k: int) -> torch.Tensor:
    """(in, k) orthonormal: the right-singular vectors of m with the k largest singular values."""
    k = min(k, m.shape[1])
    return torch.linalg.svd(m.double(), full_matrices=False)[2][:k].T.float().contiguous()


def value_bases(
    model: nn.Module,
    names: list[str],
    k: int,
    read_full: Callable[[dict], dict],
    patterns: dict | None = None,
) -> dict[str, torch.Tensor]:
    """{trained bias name: (out_features, k) basis} for value biases; a clear error for others."""
    fam = detect_family(model, patterns or None)
    if fam.is_fused("v"):
        raise ValueError(
            f"zo.subspace: {fam.name} computes q, k and v in one fused layer; use zo.subspace=0"
        )
    vs, os_ = find_projections(model, fam, "v"), find_projections(model, fam, "o")
    if len(vs) != len(os_):
        raise ValueError(
            f"zo.subspace: found {len(vs)} value and {len(os_)} output projections; use"
            " zo.subspace=0"
        )
    o_of = {vn: om for (vn, _), (_, om) in zip(vs, os_)}
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    v_out = {vn: int(vm.out_features) for vn, vm in vs}
    bases = {}
    for n in names:
        layer = n.rsplit(".", 1)[0]
        if not n.endswith(".bias") or layer not in o_of:
            raise ValueError(
                f"zo.subspace applies to value biases (bias=v); {n} is not one: use zo.subspace=0"
            )
        if k > v_out[layer]:
            raise ValueError(
                f"zo.subspace={k} exceeds the {v_out[layer]} values of {n}; use at most "
                f"{v_out[layer]} (or 0: every direction)"
            )
        weight = o_of[layer].weight
        if not weight.is_floating_point():
            raise ValueError(
                f"zo.subspace needs a floating-point output projection; {layer}'s is "
                f"{weight.dtype} (quantized): use zo.subspace=0"
            )
        w = read_full({"w": weight})["w"]
        bases[n] = top_directions(value_map(w, v_out[layer], head_dim), k)
    return bases
