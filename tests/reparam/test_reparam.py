"""Reparametrised bias updates: exact identity at start, gradients only to the reparam tensors,
trainable counts, the reshape rule, fused slices, and the maths of DoRA / PiSSA."""

import pytest
import torch

from beft.bias import apply_bias
from beft.config import ReparamConfig
from beft.reparam import KINDS, apply_reparam, factor
from beft.reparam.modules import DoRA, LoRA, PiSSA
from tiny import tiny_inputs, tiny_model

CASES = [("bert", "v"), ("llama", "v"), ("gpt_neox", "v"), ("phi3", "qk"), ("bert", "all")]


def setup(family, targets, kind, **cfg):
    model = tiny_model(family)
    sel = apply_bias(model, targets)
    ref = model(**tiny_inputs()).logits
    return model, sel, ref, apply_reparam(model, sel, kind, ReparamConfig(**cfg))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family,targets", CASES)
def test_zero_delta_at_init_and_gradients_only_to_reparam(kind, family, targets):
    model, sel, ref, rp = setup(family, targets, kind)
    out = model(**tiny_inputs()).logits
    assert torch.equal(out, ref)  # bit-identical, PiSSA/DoRA included
    out.float().pow(2).mean().backward()
    owners = set(rp.params)
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got <= owners and got  # nothing else gets a gradient
    assert all(not p.requires_grad for n, p in model.named_parameters() if n not in owners)
    assert any(p.grad.abs().sum() > 0 for p in rp.params.values() if p.grad is not None)


@pytest.mark.parametrize(
    "kind,per_layer", [("lora", 16), ("vera", 16), ("vera1d", 1), ("dora", 17), ("pissa", 16)]
)
def test_counts(kind, per_layer):
    # tiny BERT b_v: 64 -> 8 x 8; rank 1: LoRA/PiSSA 8 + 8, DoRA + 1 magnitude, VeRA 8 + rank 8
    _, _, _, rp = setup("bert", "v", kind)
    c = rp.counts(total=1000)
    assert c.bias == c.per_target["v"] == 2 * per_layer and c.reparam["kind"] == kind
    assert sum(p.numel() for p in rp.params.values()) == 2 * per_layer


def test_counts_gqa_and_rank():
    _, _, _, rp = setup("llama", "v", "lora", rank=2)  # b_v 2 kv heads x 16 = 32 -> 4 x 8
    assert rp.shapes["model.layers.0.self_attn.v_proj.bias"] == (4, 8)
    assert rp.counts(1).bias == 2 * 2 * (4 + 8)


@pytest.mark.parametrize(
    "n,spec,shape",
    [
        (384, "auto", (16, 24)),
        (192, "auto", (12, 16)),
        (64, "auto", (8, 8)),
        (7, "auto", (1, 7)),
        (384, "32x12", (32, 12)),
        (384, "5x5", (16, 24)),
    ],
)
def test_factor(n, spec, shape):
    assert factor(n, spec) == shape


@pytest.mark.parametrize("kind", KINDS)
def test_fused_slice_only_changes_selected_entries(kind):
    model, sel, _, rp = setup("gpt_neox", "v", kind)
    site = sel.sites[0]
    b0 = site.module.bias.detach().clone()
    opt = torch.optim.SGD(list(rp.params.values()), lr=0.5)
    for _ in range(2):
        model(**tiny_inputs()).logits.pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(site.module.bias, b0)  # the layer's own bias stays b0
    b1 = rp.effective_biases(dict(rp.params))[site.param_name]
    others = torch.ones_like(b0, dtype=torch.bool)
    others[site.index] = False
    assert torch.equal(b1[others], b0[others]) and not torch.equal(b1[site.index], b0[site.index])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family,targets", [("bert", "v"), ("gpt_neox", "v"), ("llama", "qv")])
def test_effective_biases_are_what_the_model_computes(kind, family, targets):
    """The adapter's b0 + delta, loaded into a fresh model as plain biases, gives the same logits
    as the trained reparametrised model; computed from a state snapshot, not the live tensors."""
    from beft.bias.adapter import load_adapter, save_adapter

    model, sel, _, rp = setup(family, targets, kind)
    opt = torch.optim.SGD(list(rp.params.values()), lr=0.5)
    for _ in range(2):
        model(**tiny_inputs()).logits.pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    snap = {n: p.detach().clone() for n, p in rp.params.items()}
    eff = rp.effective_biases(snap)
    assert any(not torch.equal(eff[n], sel.initial[n]) for n in rp.modules)  # it trained
    with torch.no_grad():
        want = model(**tiny_inputs()).logits
        for p in rp.params.values():  # live tensors elsewhere now
            p.add_(1.0)
    assert rp.effective_biases(snap).keys() == eff.keys()
    assert all(torch.equal(rp.effective_biases(snap)[n], eff[n]) for n in eff)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        save_adapter(d, sel, model, state=eff)
        fresh = tiny_model(family)
        load_adapter(fresh, d)
        with torch.no_grad():
            got = fresh(**tiny_inputs()).logits
    assert torch.allclose(got, want, atol=1e-5)


def test_dora_magnitude_scales_along_b0_and_zero_rule():
    g = torch.Generator().manual_seed(0)
    b0 = torch.randn(12)
    d = DoRA(b0, (3, 4), 1, 1.0, g)
    assert torch.equal(d(), torch.zeros(12))  # delta = effective - b0
    with torch.no_grad():
        d.m.mul_(2)
    assert torch.allclose(b0 + d(), 2 * b0)
    z = DoRA(torch.zeros(12), (3, 4), 1, 1.0, g)  # |b0| = 0: effective = m * v
    assert not z.directional and torch.equal(z(), torch.zeros(12))


def test_pissa_trains_principal_components():
    g = torch.Generator().manual_seed(0)
    b0 = torch.randn(12)
    full = PiSSA(b0, (3, 4), 3, g)  # rank = min(r1, r2): A0 B0 = M
    assert torch.allclose(full.AB0.reshape(-1), b0, atol=1e-5)
    top = PiSSA(b0, (3, 4), 1, g)
    s = torch.linalg.svdvals(b0.reshape(3, 4))
    assert torch.allclose(torch.linalg.matrix_norm(top.AB0, ord=2), s[0], atol=1e-5)
    z = PiSSA(torch.zeros(12), (3, 4), 1, g)  # degenerate: LoRA-like start
    assert torch.equal(z.AB0, torch.zeros(3, 4)) and z.B.abs().sum() > 0


def test_lora_delta_is_product():
    g = torch.Generator().manual_seed(0)
    lo = LoRA(torch.zeros(6), (2, 3), 1, 2.0, g)
    with torch.no_grad():
        lo.B.fill_(1.0)
    assert torch.allclose(lo(), (2.0 * lo.B @ lo.A).reshape(-1))
