"""Detection of attention projections by structure: it agrees with the ten tested families,
finds Qwen3 (GQA) and GPT-2's fused Conv1D, splits every fused layout exactly, and exports."""

import pytest
import torch
import transformers as tf
from test_adapter import _train
from test_detect_all import v_slice_is_the_value

from beft.bias import UnsupportedModelError, apply_bias
from beft.bias.adapter import load_adapter, save_adapter
from beft.bias.export import ExportError, export_peft, merge_checkpoint
from beft.bias.families import FAMILIES, detected_family, find_projections
from tiny import FAMILIES as TINY
from tiny import random_biases, tiny_inputs, tiny_model

COMMON = dict(
    vocab_size=128,
    hidden_size=64,
    num_attention_heads=4,
    num_hidden_layers=2,
    max_position_embeddings=128,
)


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return random_biases(tf.AutoModelForCausalLM.from_config(cfg)).eval()


def qwen3(seed=0):  # GQA: 4 query heads, 2 key/value heads
    return _model(
        tf.Qwen3Config(num_key_value_heads=2, head_dim=16, intermediate_size=128, **COMMON), seed
    )


def gpt2(seed=0):
    return _model(
        tf.GPT2Config(vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=128), seed
    )


@pytest.mark.parametrize("family", TINY)
def test_detection_agrees_with_the_tested_families(family):
    model = tiny_model(family)
    table, found = FAMILIES[family], detected_family(model)
    for t in ("q", "k", "v", "o"):
        assert [n for n, _ in find_projections(model, found, t)] == [
            n for n, _ in find_projections(model, table, t)
        ]
    if table.fused_layout is not None:
        (_, m), *_ = find_projections(model, table, "v")
        for t, idx in table.fused_layout(model.config, m.out_features).items():
            assert torch.equal(found.fused_layout(model.config, m.out_features)[t], idx)


def test_qwen3_detected_gqa_biases_and_merge(tmp_path):
    model = qwen3()
    x = tiny_inputs()
    sel = apply_bias(model, "qkvo")
    assert sel.family == "qwen3" and all(s.added for s in sel.sites)
    kv = 2 * 16
    sizes = {t: {s.module.bias.numel() for s in sel.sites if s.targets == [t]} for t in "qkvo"}
    assert sizes == {"q": {64}, "k": {kv}, "v": {kv}, "o": {64}}
    _train(model, sel)
    with torch.no_grad():
        want = model(**x).logits
    merge_checkpoint(tmp_path / "m", sel, model)
    plain = tf.AutoModelForCausalLM.from_pretrained(str(tmp_path / "m")).eval()
    assert plain.config.attention_bias is True
    with torch.no_grad():
        assert torch.equal(plain(**x).logits, want)


def test_qwen3_peft_export_reproduces_logits(tmp_path):
    peft = pytest.importorskip("peft")
    model = qwen3()
    sel = apply_bias(model, "v")
    _train(model, sel)
    with torch.no_grad():
        want = model(**tiny_inputs()).logits
    export_peft(tmp_path / "p", sel, model)
    pm = peft.PeftModel.from_pretrained(qwen3(), str(tmp_path / "p")).eval()
    with torch.no_grad():
        assert (pm(**tiny_inputs()).logits - want).abs().max() <= 1e-5


def test_gpt2_fused_conv1d_v_slice_trains_alone(tmp_path):
    model = gpt2().train()
    sel = apply_bias(model, "v")
    assert [s.name for s in sel.sites] == [
        "transformer.h.0.attn.c_attn",
        "transformer.h.1.attn.c_attn",
    ]
    site = sel.sites[0]
    assert type(site.module).__name__ == "Conv1D" and site.counts == {"v": 64}
    assert site.index.tolist() == list(range(128, 192))  # [q | k | v], each 64 wide
    before = site.module.bias.detach().clone()
    _train(model, sel)
    moved = (site.module.bias.detach() != before).nonzero().squeeze(1)
    assert moved.numel() > 0 and moved.min() >= 128
    model.eval()
    with torch.no_grad():
        want = model(**tiny_inputs()).logits
    save_adapter(tmp_path / "a", sel, model)
    fresh = gpt2()
    load_adapter(fresh, tmp_path / "a")
    with torch.no_grad():
        assert torch.equal(fresh(**tiny_inputs()).logits, want)
    with pytest.raises(
        ExportError, match="only torch.nn.Linear; transformer.h.0.attn.c_attn is a Conv1D"
    ):
        export_peft(tmp_path / "p", sel, model)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "cfg",
    [
        tf.FalconConfig(
            new_decoder_architecture=True, num_kv_heads=2, **COMMON
        ),  # grouped [q q | k | v] per kv head
        tf.FalconConfig(
            new_decoder_architecture=False, multi_query=False, **COMMON
        ),  # per head [q k v]
        tf.FalconConfig(
            new_decoder_architecture=False, multi_query=True, **COMMON
        ),  # [q | k | v], one kv head
        tf.GPTBigCodeConfig(
            multi_query=False, vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=128
        ),
        tf.GPTBigCodeConfig(
            multi_query=True, vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=128
        ),
    ],
    ids=["falcon-grouped", "falcon-per-head", "falcon-mq", "bigcode", "bigcode-mq"],
)
def test_fused_variants_split_v_exactly(cfg):
    model = _model(cfg)
    fam = detected_family(model)
    sel = apply_bias(model, "v")
    assert v_slice_is_the_value(model, fam, sel.sites[0], atol=1e-5)


def test_model_without_attention_refused_in_one_line():
    model = _model(
        tf.MambaConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, state_size=4)
    )
    with pytest.raises(
        UnsupportedModelError, match="no attention projection found in MambaForCausalLM"
    ) as e:
        apply_bias(model, "v")
    assert "\n" not in str(e.value)


def test_unknown_target_projection_refused():
    """A model whose output projection is not identified has no 'o' target: a one-line refusal."""
    model = qwen3()
    fam = detected_family(model)
    fam.projections.pop("o")
    with pytest.raises(UnsupportedModelError, match="no 'o' projection that beft can identify"):
        find_projections(model, fam, "o")
