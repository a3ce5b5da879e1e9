"""A frozen 16-bit base on the CPU back-propagates through beft.half_linear: the same gradients as
torch's own bf16 path (within bf16 rounding), through every backend's loader."""

import pytest
import torch
from torch import nn

from beft import half_linear
from beft.backends.local import LocalBackend, keep_fp32
from beft.bias import apply_bias
from beft.config import load_config
from tiny import save_tiny, tiny_inputs


def _grads(model, params):
    for p in params.values():
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**tiny_inputs(), labels=tiny_inputs()["input_ids"])
    out.loss.backward()
    return out.logits.detach().float(), {n: p.grad.clone() for n, p in params.items()}


def test_loaded_bf16_base_back_propagates_through_the_fast_path(tmp_path):
    d = save_tiny("llama", tmp_path / "llama")
    backend = LocalBackend(load_config(None, ["precision=bf16"]))
    backend.init()
    model, _, _ = backend.load_model(str(d), "decoder")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is half_linear.FrozenHalfLinear for m in linears)
    sel = apply_bias(model, "v")
    params = sel.trainable_parameters()
    keep_fp32(params)
    v = model.model.layers[0].self_attn.v_proj
    x = torch.randn(2, 3, v.in_features, requires_grad=True)
    with torch.autocast("cpu", dtype=v.weight.dtype):
        y = v(x)
    assert type(y.grad_fn).__name__ == "_FrozenHalfLinearBackward"  # not torch's addmm / mm
    with torch.no_grad(), torch.autocast("cpu", dtype=v.weight.dtype):
        assert v(x).grad_fn is None  # evaluation takes torch's path

    logits, fast = _grads(model, params)
    for m in linears:  # torch's own path on the same weights
        m.__class__ = nn.Linear
    ref_logits, ref = _grads(model, params)
    assert torch.equal(logits, ref_logits)  # the forward is torch's, bit for bit
    for n, g in ref.items():
        assert g.dtype == fast[n].dtype == torch.float32
        scale = g.abs().max().item()
        assert scale > 0
        assert (fast[n] - g).abs().max().item() <= 0.02 * scale, n  # bf16 rounding, not a bug


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_input_gradient_is_the_product_within_16_bit_rounding(dtype):
    torch.manual_seed(0)
    lin = nn.Linear(40, 3000, bias=True).to(dtype)  # 3000 weight rows: three blocks of 1024
    lin = half_linear.install(lin)
    lin.weight.requires_grad_(False)
    x = torch.randn(5, 40, dtype=dtype, requires_grad=True)
    g = torch.randn(5, 3000, dtype=dtype)
    lin(x).backward(g)
    exact = g.double() @ lin.weight.double()  # summed in fp32 over the blocks, rounded once
    assert x.grad.dtype == dtype
    assert (x.grad.double() - exact).abs().max() <= exact.abs().max() * 2**-7
    assert lin.bias.grad.dtype == dtype
    want = g.double().sum(0)
    assert (lin.bias.grad.double() - want).abs().max() <= want.abs().max() * 2**-7


def test_fp32_trained_and_quantized_weights_keep_torch_s_path():
    lin = half_linear.install(nn.Linear(4, 3))  # fp32 weight
    assert type(lin(torch.randn(2, 4, requires_grad=True)).grad_fn).__name__ != (
        "_FrozenHalfLinearBackward"
    )
    half = half_linear.install(nn.Linear(4, 3).to(torch.bfloat16))  # trained (requires grad)
    y = half(torch.randn(2, 4, dtype=torch.bfloat16))
    assert type(y.grad_fn).__name__ != "_FrozenHalfLinearBackward"

    class Quantized(nn.Linear):  # e.g. bitsandbytes' Linear8bitLt: a subclass, left alone
        pass

    q = half_linear.install(nn.Sequential(Quantized(4, 3)))
    assert type(q[0]) is Quantized
