"""Planner arithmetic: parameter counts against real (meta-device) models, unit rules, sharding,
quantization, CLI."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import transformers as tf

from beft.plan import (
    BUILTIN,
    GB,
    Method,
    Setup,
    arch_from_config,
    fits,
    load_arch,
    plan,
    total_params,
    trainable_params,
)
from inprocess import run_script
from paths import ROOT
from tiny import tiny_config

HF_CLASS = {
    "llama": tf.LlamaConfig,
    "gptj": tf.GPTJConfig,
    "opt": tf.OPTConfig,
    "bert": tf.BertConfig,
    "roberta": tf.RobertaConfig,
}


def _meta_model(cfg):
    cfg.num_labels = 2
    with torch.device("meta"):
        if cfg.model_type in ("bert", "roberta"):
            return tf.AutoModelForSequenceClassification.from_config(cfg)
        return tf.AutoModelForCausalLM.from_config(cfg)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_param_count_matches_transformers(name):
    kw = dict(BUILTIN[name])
    cfg = HF_CLASS[kw.pop("model_type")](**kw)
    assert total_params(load_arch(name)) == _count(_meta_model(cfg))


@pytest.mark.parametrize("family", ["bert", "roberta", "opt", "llama", "gptj"])
def test_tiny_param_count_and_bias_targets(family):
    from beft.bias import apply_bias

    cfg = tiny_config(family)
    a = arch_from_config(cfg)
    model = _meta_model(cfg)
    assert total_params(a) == _count(model)
    head = ["classifier"] if family in ("bert", "roberta") else []
    with torch.device("meta"):
        sel = apply_bias(model, "v", head=head)
    assert trainable_params(a, Method.parse("bias", "v")) == sel.counts(model).trainable
    fresh = _meta_model(tiny_config(family))
    with torch.device("meta"):
        sel_all = apply_bias(fresh, "all", head=head)
    assert trainable_params(a, Method.parse("bitfit")) == sel_all.counts(fresh).trainable


def test_known_published_counts():
    assert total_params(load_arch("llama2-7b")) == 6_738_415_616
    assert total_params(load_arch("opt-1.3b")) == 1_315_758_080
    assert total_params(load_arch("gpt-j-6b")) == 6_050_882_784


def test_7b_bf16_weights_and_sharding():
    a = load_arch("llama-2-7b")
    m = Method.parse("bias", "v")
    one = plan(a, m, Setup(dtype="bf16"))
    assert one["weights"] / GB == pytest.approx(13.5, abs=0.1)  # 6.74e9 x 2 bytes
    z3 = plan(a, m, Setup(dtype="bf16", zero=3, gpus=8))
    gather = z3["weights"] - one["weights"] / 8
    assert 0 < gather < 1.0 * GB  # 2 layers in flight
    # ZeRO-3 divides weights, grads and optimizer by the GPU count (full fine-tuning)
    full1 = plan(a, Method.parse("full"), Setup(dtype="bf16"))
    full8 = plan(a, Method.parse("full"), Setup(dtype="bf16", zero=3, gpus=8))
    for k in ("grads", "optimizer"):
        assert full8[k] == pytest.approx(full1[k] / 8)
    assert full1["optimizer"] == pytest.approx(12 * 6_738_415_616)  # fp32 master + m + v
    z2 = plan(a, Method.parse("full"), Setup(dtype="bf16", zero=2, gpus=4))
    assert z2["weights"] == full1["weights"] and z2["grads"] == pytest.approx(full1["grads"] / 4)
    assert full8["activations"] == full1["activations"]  # activations are not sharded


def test_8bit_halves_weights_4bit_quarters():
    a = load_arch("llama2-7b")
    m = Method.parse("bias", "v")
    bf16 = plan(a, m, Setup(dtype="bf16"))["weights"]
    int8 = plan(a, m, Setup(dtype="int8"))["weights"]
    int4 = plan(a, m, Setup(dtype="int4"))["weights"]
    assert 0.5 <= int8 / bf16 < 0.55  # Linear weights 1 byte; embeddings/head stay bf16
    assert 0.25 < int4 / bf16 < 0.35
    with pytest.raises(ValueError, match="full fine-tuning"):
        plan(a, Method.parse("full"), Setup(dtype="int8"))


def test_bias_only_memory_is_activation_bound_and_gqa_safe():
    a = load_arch("smollm2")  # 9 heads, 3 kv heads: b_v is 192 wide, not 576
    assert trainable_params(a, Method.parse("bias", "v")) == 30 * 192
    assert trainable_params(a, Method.parse("bias", "q")) == 30 * 576
    big = load_arch("llama2-7b")
    bv = plan(big, Method.parse("bias", "v"), Setup(batch=4, seq=512))
    full = plan(big, Method.parse("full"), Setup(batch=4, seq=512))
    assert bv["optimizer"] < 1e-3 * full["optimizer"]
    assert bv["activations"] < full["activations"]  # no Linear inputs kept
    # b_o in the lowest layer needs no attention activations there; b_q needs all of them
    lo = plan(big, Method.parse("bias", "o"), Setup(batch=4, seq=512))["activations"]
    hi = plan(big, Method.parse("bias", "q"), Setup(batch=4, seq=512))["activations"]
    assert lo < hi


def test_activations_scale_with_tokens_and_offload():
    a = load_arch("opt-1.3b")
    m = Method.parse("full")
    s1 = plan(a, m, Setup(batch=1, seq=512))["activations"]
    s4 = plan(a, m, Setup(batch=4, seq=512))["activations"]
    assert s4 == pytest.approx(4 * s1)
    off = plan(a, m, Setup(zero=3, gpus=2, offload="all"))
    assert off["optimizer"] == 0 and off["weights"] < plan(a, m, Setup(zero=3, gpus=2))["weights"]
    with pytest.raises(ValueError):
        plan(a, m, Setup(zero=2, offload="param"))


def test_fits_named_gpus():
    assert fits(10 * GB, "t4") == (True, pytest.approx(15360 * 2**20 / GB - 1.5, abs=0.01))
    assert not fits(20 * GB, "t4")[0]
    assert fits(140 * GB, "h200")[0] and not fits(140 * GB, "a100-80")[0]
    with pytest.raises(ValueError, match="unknown gpu"):
        fits(1, "v100")


def test_from_config_object():
    cfg = SimpleNamespace(
        model_type="qwen2",
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=100,
        tie_word_embeddings=True,
    )
    a = arch_from_config(cfg)
    assert a.kvd == 32 and a.attn_bias == "qkv"
    with pytest.raises(ValueError, match="planner knows"):
        arch_from_config(SimpleNamespace(model_type="t5"))


def _cli(*args):
    """launch/plan.py ARGS, in this process."""
    return run_script(ROOT / "launch" / "plan.py", args, cwd=ROOT)


def test_cli_issue_example_and_errors():
    out = _cli(
        "model=llama2-7b",
        "method=bias",
        "bias=v",
        "dtype=bf16",
        "zero=3",
        "gpus=8",
        "batch=4",
        "seq=512",
        "gpu=a100-80",
    )
    assert out.returncode == 0, out.stderr
    for word in ("weights", "grads", "optimizer", "activations", "peak", "a100-80: fits"):
        assert word in out.stdout
    full = _cli("model=llama2-7b", "method=full", "dtype=bf16", "gpu=a100-80")
    assert full.returncode == 0 and "does NOT fit" in full.stdout
    bad = _cli("model=llama2-7b", "dtype=fp8")
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    assert _cli("model=llama2-7b", "colour=red").returncode == 2
