"""precision=bf16: the frozen base loads in bf16, trained tensors hold fp32, the forward runs."""

import pytest
import torch

from beft.backends.dist import base_dtype
from beft.backends.local import LocalBackend
from beft.bias import apply_bias
from beft.config import load_config
from tiny import save_tiny, tiny_inputs


def test_base_dtype_choices():
    assert base_dtype("bf16") == torch.bfloat16 and base_dtype("fp16") == torch.float16
    assert base_dtype("fp32") == torch.float32
    if not torch.cuda.is_available():
        assert base_dtype("auto") == torch.float32  # the CPU has no native half type


@pytest.mark.parametrize("precision,frozen", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_local_frozen_base_in_its_dtype_trained_in_fp32(precision, frozen, tmp_path):
    d = save_tiny("llama", tmp_path / "llama")
    backend = LocalBackend(load_config(None, [f"precision={precision}"]))
    backend.init()
    model, _, _ = backend.load_model(str(d), "decoder")
    sel = apply_bias(model, "v")
    params = sel.trainable_parameters()
    opt = lambda ps: (torch.optim.AdamW(ps, lr=1e-2), None)  # noqa: E731
    params = backend.prepare(model, params, opt)
    assert {p.dtype for p in params.values()} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {frozen}
    with backend.autocast():
        loss = model(**tiny_inputs(), labels=tiny_inputs()["input_ids"]).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params.values())


def _gpu(monkeypatch, bf16: bool, capability=(7, 0), name="Tesla V100-SXM2-16GB"):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)


def test_bf16_on_a_gpu_without_native_bf16_is_refused(monkeypatch):
    from beft.backends.ds_config import fill

    _gpu(monkeypatch, bf16=False)
    with pytest.raises(
        ValueError,
        match=r"precision=bf16: this GPU \(Tesla V100-SXM2-16GB, compute capability "
        r"7.0\) has no native bfloat16.*use precision=fp32, or fp16",
    ):
        base_dtype("bf16")
    assert (
        base_dtype("auto") == torch.float32 and base_dtype("fp16") == torch.float16
    )  # auto falls back
    from paths import ROOT

    with pytest.raises(ValueError, match="has no native bfloat16"):
        fill(str(ROOT / "ds_configs" / "zero2.json"), load_config(None, ["precision=bf16"]), 1, 64)
    _gpu(monkeypatch, bf16=True, capability=(8, 0), name="A100")
    assert base_dtype("bf16") == torch.bfloat16 and base_dtype("auto") == torch.bfloat16
