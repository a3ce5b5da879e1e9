"""Planner arithmetic for forward-only (ZO) training and activation checkpointing."""

from __future__ import annotations

import json

import pytest

from beft.plan import Method, Setup, load_arch, outer_params, plan, trainable_params
from inprocess import run_script
from paths import ROOT

BV = Method.parse("bias", "v")


def test_zo_has_no_gradients_and_only_tiny_state():
    a = load_arch("llama2-7b")  # decoder: no new head
    biases = trainable_params(a, BV)  # 32 x 4096
    sgd = plan(a, BV, Setup(optim="zo"))
    adam = plan(a, BV, Setup(optim="zo", zo_update="adam"))
    assert sgd["grads"] == 0 and adam["grads"] == 0
    assert sgd["optimizer"] == 12 * biases  # values before the step, z, the estimate (fp32)
    assert adam["optimizer"] == 20 * biases  # + ZO-Adam's m and v
    assert adam["weights"] == plan(a, BV, Setup())["weights"]


def test_zo_encoder_head_first_order_or_frozen():
    a = load_arch("bert-base")
    head = outer_params(a)["head"]
    fo = plan(a, BV, Setup(dtype="fp32", optim="zo", zo_head="first_order"))
    frozen = plan(a, BV, Setup(dtype="fp32", optim="zo", zo_head="freeze"))
    assert fo["grads"] == 4 * head and frozen["grads"] == 0
    assert fo["optimizer"] - frozen["optimizer"] == 12 * head  # the head: fp32 copy + AdamW m, v
    # the head's train-mode forward (dropout) has the larger working set under the math kernel
    assert (
        plan(a, BV, Setup(optim="zo", kernel="math"))["transient"]
        > plan(a, BV, Setup(optim="zo", kernel="math", zo_head="freeze"))["transient"]
    )


def test_zo_encoder_activations_are_one_layers_forward():
    a = load_arch("minilm")
    p = plan(a, BV, Setup(dtype="fp32", batch=16, seq=128, optim="zo", zo_head="freeze"))
    assert p["activations"] == 0
    # counted on MiniLM (eval, no_grad): layer input + attention output + GELU input and output
    assert p["transient"] == (3 * 384 + 2 * 1536) * 16 * 128 * 4
    # independent of depth: a 12-layer model has the same forward working set
    deep = load_arch("bert-base")
    assert (
        plan(deep, BV, Setup(dtype="fp32", batch=16, seq=128, optim="zo", zo_head="freeze"))[
            "transient"
        ]
        == (3 * 768 + 2 * 3072) * 16 * 128 * 4
    )


def test_zo_decoder_kv_cache_and_the_loss_peak():
    a = load_arch("smollm2")
    tokens = 4 * 256
    p = plan(a, BV, Setup(dtype="fp32", batch=4, seq=256, optim="zo", kv_cache=True))
    assert p["activations"] == (30 * 2 * 192 + 576) * tokens * 4  # KV cache + final hidden
    assert p["transient"] == 2 * 4 * tokens * 49152  # fp32 logits + log-probs
    off = plan(
        a, BV, Setup(dtype="fp32", batch=4, seq=256, optim="zo")
    )  # beft's loop: use_cache=False
    assert off["activations"] == 576 * tokens * 4
    bf16 = plan(a, BV, Setup(batch=4, seq=256, optim="zo"))
    assert (
        bf16["transient"] == (2 + 4 + 4) * tokens * 49152
    )  # 16-bit logits, fp32 upcast, log-probs


def test_zo_and_ckpt_save_memory_in_order():
    a = load_arch("llama2-7b")
    s = dict(batch=4, seq=512)
    bp = plan(a, BV, Setup(**s))
    ck = plan(a, BV, Setup(ckpt=True, **s))
    zo = plan(a, BV, Setup(optim="zo", kv_cache=False, **s))
    assert zo["peak"] < ck["peak"] < bp["peak"]
    assert zo["activations"] + zo["transient"] < 0.1 * (bp["activations"] + bp["transient"])


def test_ckpt_keeps_layer_inputs_and_recomputes_one_layer():
    a = load_arch("smollm2")
    tokens = 4 * 256
    s = dict(dtype="fp32", batch=4, seq=256)
    ck = plan(a, BV, Setup(ckpt=True, **s))
    # 30 layer inputs + final RMSNorm input and rstd, + the fp32 log-probs the loss keeps
    assert ck["activations"] == (30 * 576 + 577) * tokens * 4 + 4 * tokens * 49152
    assert ck["transient"] == plan(a, BV, Setup(**s))["transient"]  # the loss still tops backward
    # doubling the depth adds only the layer inputs
    deep = load_arch("llama2-7b")
    one = plan(deep, BV, Setup(ckpt=True, dtype="fp32", batch=1, seq=128))
    assert (
        one["activations"]
        < plan(deep, BV, Setup(dtype="fp32", batch=1, seq=128))["activations"] / 5
    )
    # gradients and optimizer states are what they are without checkpointing
    full, full_ck = plan(deep, Method.parse("full"), Setup()), plan(
        deep, Method.parse("full"), Setup(ckpt=True)
    )
    assert (full_ck["grads"], full_ck["optimizer"]) == (full["grads"], full["optimizer"])
    assert full_ck["activations"] < full["activations"]


def test_ckpt_encoder_transient_is_one_layer_plus_its_mlp_backward():
    a = load_arch("minilm")
    tokens = 16 * 128
    ck = plan(a, BV, Setup(dtype="fp32", batch=16, seq=128, kernel="math", ckpt=True))
    assert ck["activations"] == (6 * 384 + 2 * 384 + 2) * tokens * 4  # inputs + embedding LayerNorm
    per_layer = 2 * (384 + 2) + (384 + 2 * 384 + 3 * 12 * 128) + 1536 + 2 * 384
    assert ck["transient"] == (per_layer + 2 * 1536 + 2 * 384) * tokens * 4


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"method": Method.parse("full"), "optim": "zo"}, "method=bias or bitfit"),
        ({"optim": "zo", "zo_update": "sgdm"}, "zo_update"),
        ({"optim": "sgd"}, "adamw or zo"),
    ],
)
def test_zo_errors(kw, match):
    m = kw.pop("method", BV)
    with pytest.raises(ValueError, match=match):
        plan(load_arch("llama2-7b"), m, Setup(**kw))


def test_zo_sharded_first_order_head_is_full_on_every_rank():
    """FSDP / ZeRO-3 with a first-order encoder head: the head trains on full fp32 copies (copy,
    gradient, AdamW m and v) on every rank, so its bytes do not shrink with the number of GPUs."""
    a = load_arch("bert-base")
    two = plan(a, BV, Setup(optim="zo", fsdp=True, gpus=2))
    four = plan(a, BV, Setup(optim="zo", fsdp=True, gpus=4))
    frozen = plan(a, BV, Setup(optim="zo", fsdp=True, gpus=2, zo_head="freeze"))
    assert two["optimizer"] == four["optimizer"] > frozen["optimizer"]
    assert two["grads"] == four["grads"] > frozen["grads"] == 0
    assert plan(a, BV, Setup(optim="zo", zero=3, gpus=2))["grads"] == two["grads"]


def _cli(*args):
    """launch/plan.py ARGS, in this process."""
    return run_script(ROOT / "launch" / "plan.py", args, cwd=ROOT)


def test_cli_zo_and_ckpt():
    zo = _cli(
        "model=llama2-7b",
        "method=bias",
        "bias=v",
        "optim=zo",
        "zo_update=adam",
        "batch=4",
        "gpu=t4",
        "json=true",
    )
    assert zo.returncode == 0, zo.stderr
    ck = _cli(
        "model=llama2-7b",
        "method=bias",
        "bias=v",
        "activation_checkpointing=true",
        "batch=4",
        "json=true",
    )
    bp = _cli("model=llama2-7b", "method=bias", "bias=v", "batch=4", "json=true")
    zo, ck, bp = (json.loads(x.stdout) for x in (zo, ck, bp))
    assert zo["grads"] == 0 and zo["peak"] < bp["peak"] and ck["peak"] < bp["peak"]
    z3 = json.loads(
        _cli(
            "model=llama2-7b",
            "method=bias",
            "bias=v",
            "optim=zo",
            "zero=3",
            "gpus=2",
            "batch=4",
            "json=true",
        ).stdout
    )  # ZO under ZeRO-3: weights / 2
    one = json.loads(
        _cli("model=llama2-7b", "method=bias", "bias=v", "optim=zo", "batch=4", "json=true").stdout
    )
    assert z3["weights"] < 0.6 * one["weights"]  # (+ the gathered layers in flight)
    text = _cli("model=minilm", "optim=zo", "zo_head=freeze", "dtype=fp32")
    assert text.returncode == 0 and "ZO (sgd; head freeze)" in text.stdout
    for bad in (
        ("optim=zo", "method=full"),
        ("ckpt=maybe",),
        ("kernel=fast",),
        ("optim=zo", "zo_update=x"),
    ):
        p = _cli("model=llama2-7b", *bad)
        assert (
            p.returncode == 2 and p.stderr.startswith("error:") and "Traceback" not in p.stderr
        ), (bad, p.stderr)
