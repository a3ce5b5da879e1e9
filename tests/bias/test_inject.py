import pytest
import torch
from torch import nn

from beft.bias import UnsupportedModelError, apply_bias, parse_targets
from beft.bias.families import FAMILIES
from tiny import ENCODERS, tiny_inputs, tiny_model
from tiny import FAMILIES as TINY


def _head(family):
    return ["classifier"] if family in ENCODERS else []


def test_every_family_is_covered():
    assert set(TINY) <= set(FAMILIES)


@pytest.mark.parametrize("family", TINY)
@pytest.mark.parametrize("targets", ["q", "k", "v", "o", "qv", "all"])
def test_zero_init_is_bit_identical(family, targets):
    model = tiny_model(family)
    x = tiny_inputs()
    with torch.no_grad():
        before = model(**x).logits
    apply_bias(model, targets, head=_head(family))
    with torch.no_grad():
        after = model(**x).logits
    assert torch.equal(before, after)


@pytest.mark.parametrize("family", TINY)
def test_added_bias_sized_from_layer_not_hidden_size(family):
    model = tiny_model(family)
    sel = apply_bias(model, "qkvo", head=_head(family))
    for site in sel.sites:
        assert site.module.bias.shape == (site.module.out_features,)
        assert site.module.bias.dtype == site.module.weight.dtype
        if site.added:
            assert torch.count_nonzero(site.module.bias) == 0
    if family in ("llama", "mistral", "qwen2"):  # GQA: v is narrower than hidden
        v = [s for s in sel.sites if s.targets == ["v"]][0]
        kv = (
            model.config.num_key_value_heads
            * model.config.hidden_size
            // model.config.num_attention_heads
        )
        assert v.module.out_features == kv < model.config.hidden_size
        assert sel.counts(model).per_target["v"] == kv * model.config.num_hidden_layers


@pytest.mark.parametrize("family", TINY)
@pytest.mark.parametrize("targets", ["v", "qk", "all"])
def test_only_selected_biases_change(family, targets):
    model = tiny_model(family).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sel = apply_bias(model, targets, head=_head(family))
    params = sel.trainable_parameters()
    opt = torch.optim.AdamW(params.values(), lr=1e-2, weight_decay=0.1)
    x = tiny_inputs(batch=4)
    for _ in range(3):
        loss = model(**x).logits.float().pow(2).mean()
        loss.backward()
        opt.step()
        sel.restore_frozen_slices()
        opt.zero_grad()
    after = model.state_dict()
    fused = {s.param_name: s.index for s in sel.sites if s.index is not None}
    for k, v in after.items():
        if k not in before:  # added bias
            assert k in params, k
            continue
        if k in fused:
            mask = torch.zeros(v.shape[0], dtype=torch.bool)
            mask[fused[k]] = True
            assert torch.equal(v[~mask], before[k][~mask]), f"frozen slice of {k} moved"
            assert not torch.equal(v[mask], before[k][mask])
        elif k in params:
            continue
        else:
            assert torch.equal(v, before[k]), f"{k} changed but was not selected"
    changed = [k for k in params if k not in before or not torch.equal(after[k], before[k])]
    assert changed, "nothing trained"


@pytest.mark.parametrize("family", ["gpt_neox", "phi3"])
def test_fused_v_slice(family):
    model = tiny_model(family)
    sel = apply_bias(model, "v")
    cfg = model.config
    site = sel.sites[0]
    hd = cfg.hidden_size // cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    assert site.counts == {"v": n_kv * hd}
    if family == "gpt_neox":  # interleaved per head: [q_h k_h v_h]
        assert site.index[:hd].tolist() == list(range(2 * hd, 3 * hd))
    else:  # [q | k | v]
        assert site.index[0].item() == (cfg.num_attention_heads + n_kv) * hd


@pytest.mark.parametrize("family", ["gpt_neox", "phi3"])
def test_fused_mask_follows_the_model_to_another_dtype(family):
    """The model may move (GPU) or be cast (DeepSpeed bf16) after the bias is selected; the same
    Parameter keeps its gradient hook, whose mask must follow: it was a CPU fp32 tensor and the
    bf16 backward failed (CUDA: a device mismatch)."""
    model = tiny_model(family)
    sel = apply_bias(model, "v")
    model.bfloat16()  # keeps the Parameter objects (and the hook)
    (bias, frozen, _), *_ = sel.frozen_slices
    model(**tiny_inputs(batch=2)).logits.float().pow(2).mean().backward()
    assert bias.grad.dtype == torch.bfloat16 and bias.grad[frozen].abs().max() == 0
    trained = torch.ones(bias.numel(), dtype=torch.bool)
    trained[frozen] = False
    assert bias.grad[trained].abs().max() > 0


@pytest.mark.parametrize("family,zero", [("bert", True), ("opt", True), ("llama", False)])
def test_key_bias_gradient_zero_without_rotary(family, zero):
    model = tiny_model(family).train()
    for m in model.modules():
        if hasattr(m, "p") and isinstance(getattr(m, "p"), float):
            m.p = 0.0
    model.config.attention_probs_dropout_prob = 0.0
    sel = apply_bias(model, "k", head=_head(family))
    loss = model(**tiny_inputs(batch=3)).logits.float().pow(2).mean()
    loss.backward()
    g = torch.cat([p.grad.flatten() for p in sel.bias_parameters().values()])
    if zero:  # softmax is shift-invariant: b_k adds the same score to every key
        assert g.abs().max() < 1e-6
    else:  # with RoPE b_k is rotated per position and gets a real gradient
        assert g.abs().max() > 1e-6


def test_all_includes_layer_norms_and_counts():
    model = tiny_model("bert")
    sel = apply_bias(model, "all", head=["classifier"])
    assert any("LayerNorm" in n for n in sel.extra)
    c = sel.counts(model)
    native = sum(
        p.numel()
        for n, p in model.named_parameters()
        if n.endswith(".bias") and not n.startswith("classifier")
    )
    assert c.bias == native
    assert c.head == sum(p.numel() for p in model.classifier.parameters())
    assert c.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parse_targets():
    assert parse_targets("vq") == ["q", "v"]
    assert parse_targets("q,v") == ["q", "v"]
    assert parse_targets(["v"]) == ["v"]
    assert parse_targets("BitFit") == ["all"]
    with pytest.raises(ValueError, match="unknown bias target 'x'"):
        parse_targets("x")


def test_no_attention_projection_refused_and_patterns_work():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.wv = nn.Linear(8, 8, bias=False)

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Attn(), Attn()])
            self.config = type("C", (), {"model_type": "toy"})()

    with pytest.raises(
        UnsupportedModelError, match="no attention projection found in Toy.*bias_patterns"
    ):
        apply_bias(Toy(), "v")
    sel = apply_bias(Toy(), "v", patterns={"v": r"blocks\.\d+\.wv"})
    assert [s.name for s in sel.sites] == ["blocks.0.wv", "blocks.1.wv"] and all(
        s.added for s in sel.sites
    )
    with pytest.raises(UnsupportedModelError, match="no 'v' projection"):
        apply_bias(Toy(), "v", patterns={"v": r"nothing"})
