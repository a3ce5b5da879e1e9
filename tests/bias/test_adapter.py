import pytest
import torch

from beft.bias import apply_bias
from beft.bias.adapter import AdapterMismatchError, load_adapter, read_adapter, save_adapter
from tiny import ENCODERS, FAMILIES, tiny_inputs, tiny_model


def _train(model, sel, steps=3):
    opt = torch.optim.AdamW(sel.trainable_parameters().values(), lr=5e-2, weight_decay=0.0)
    x = tiny_inputs(batch=4)
    for _ in range(steps):
        model(**x).logits.float().pow(2).mean().backward()
        opt.step()
        sel.restore_frozen_slices()
        opt.zero_grad()


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_round_trip_reproduces_logits_exactly(family, tmp_path):
    head = ["classifier"] if family in ENCODERS else []
    model = tiny_model(family, seed=0).train()
    sel = apply_bias(model, "v", head=head)
    _train(model, sel)
    model.eval()
    with torch.no_grad():
        want = model(**tiny_inputs()).logits
    path = save_adapter(tmp_path / "a", sel, model)
    tensors, meta = read_adapter(tmp_path / "a")
    assert meta["family"] == sel.family and meta["targets"] == ["v"]
    assert set(tensors) == set(sel.trainable_parameters())
    assert meta["shapes"] and meta["beft_version"]
    assert path.stat().st_size < 200_000
    fresh = tiny_model(family, seed=0)
    if head:  # a fresh head would be re-initialised randomly: the adapter must carry it
        torch.nn.init.normal_(
            fresh.classifier.weight
            if hasattr(fresh.classifier, "weight")
            else fresh.classifier.dense.weight
        )
    load_adapter(fresh, tmp_path / "a")
    with torch.no_grad():
        got = fresh(**tiny_inputs()).logits
    assert torch.equal(want, got)


def test_adapter_onto_other_family_or_shape_fails(tmp_path):
    model = tiny_model("llama")
    sel = apply_bias(model, "v")
    save_adapter(tmp_path / "a", sel, model)
    with pytest.raises(
        AdapterMismatchError, match="trained on a llama model.*this model is mistral"
    ):
        load_adapter(tiny_model("mistral"), tmp_path / "a")
    import transformers as tf

    from tiny import tiny_config

    cfg = tiny_config("llama")
    cfg.num_key_value_heads = 4  # wider v_proj
    with pytest.raises(AdapterMismatchError, match=r"adapter shape \(32,\) != model shape \(64,\)"):
        load_adapter(tf.AutoModelForCausalLM.from_config(cfg), tmp_path / "a")
    cfg = tiny_config("llama")
    cfg.num_hidden_layers = 3
    with pytest.raises(AdapterMismatchError, match="layer count"):
        load_adapter(tf.AutoModelForCausalLM.from_config(cfg), tmp_path / "a")


def test_not_an_adapter(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bias adapter"):
        read_adapter(tmp_path)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "adapter.safetensors"))
    with pytest.raises(AdapterMismatchError, match="not a beft bias adapter"):
        read_adapter(tmp_path)
