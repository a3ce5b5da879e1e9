import pytest
import torch
import transformers as tf

from beft.backends import quant
from beft.bias import apply_bias
from tiny import tiny_inputs, tiny_model

pytestmark = pytest.mark.skipif(not quant.available(), reason="bitsandbytes not installed")


@pytest.fixture
def llama_dir(tmp_path):
    model = tiny_model("llama")
    model.save_pretrained(tmp_path / "llama")
    return tmp_path / "llama"


def test_8bit_biases_train_on_int8_layers(llama_dir):
    model = tf.AutoModelForCausalLM.from_pretrained(
        llama_dir, quantization_config=quant.quantization_config(8)
    )
    v = model.model.layers[0].self_attn.v_proj
    assert v.weight.dtype == torch.int8 and "8bit" in type(v).__name__
    x = tiny_inputs(batch=4)
    with torch.no_grad():
        before = model(**x).logits
    sel = apply_bias(model, "v")
    with torch.no_grad():
        assert torch.equal(model(**x).logits, before)
    assert all(s.added and s.module.bias.dtype == torch.float32 for s in sel.sites)
    labels = x["input_ids"]
    opt = torch.optim.AdamW(sel.trainable_parameters().values(), lr=5e-2, weight_decay=0.0)
    w0 = v.weight.clone()
    losses = []
    for _ in range(8):
        loss = model(**x, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1e-3
    assert torch.equal(v.weight, w0)
    assert torch.count_nonzero(v.bias) > 0


def test_4bit_added_biases_are_zeroed(llama_dir):
    # a 4-bit load with attention_bias=True leaves the missing biases uninitialised (whatever the
    # memory held: NaN at times); select every attention bias the config added, so all get zeroed
    model = tf.AutoModelForCausalLM.from_pretrained(
        llama_dir, quantization_config=quant.quantization_config(4), attention_bias=True
    )
    sel = apply_bias(model, "qkvo")
    quant.zero_added_biases(sel)
    for s in sel.sites:
        assert s.added and torch.count_nonzero(s.module.bias) == 0
    out = model(**tiny_inputs()).logits
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("bits", [8, 4])
def test_new_encoder_head_stays_full_precision(bits, tmp_path):
    """An encoder's new classifier is left out of quantization: bitsandbytes made it an int8 layer
    with no quantized state (random init) and the first forward crashed (8-bit MiniLM on CPU)."""
    tiny_model("bert").save_pretrained(tmp_path / "bert")
    model = tf.AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "bert", num_labels=2, quantization_config=quant.quantization_config(bits)
    )
    assert (
        type(model.classifier) is torch.nn.Linear and model.classifier.weight.dtype == torch.float32
    )
    assert (
        "bit" in type(model.bert.encoder.layer[0].attention.self.value).__name__
    )  # the base is quantized
    x = tiny_inputs(batch=4)
    sel = apply_bias(model, "v")
    model.classifier.weight.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(**x).logits, torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert model.classifier.weight.grad is not None and all(
        s.module.bias.grad is not None for s in sel.sites
    )
