import pytest
import torch
import transformers as tf
from test_adapter import _train

from beft.bias import apply_bias
from beft.bias.export import ExportError, export_peft, merge_checkpoint
from tiny import ENCODERS, FAMILIES, tiny_inputs, tiny_model

peft = pytest.importorskip("peft")


def _trained(family, targets="v"):
    head = ["classifier"] if family in ENCODERS else []
    model = tiny_model(family, seed=0).train()
    sel = apply_bias(model, targets, head=head)
    _train(model, sel)
    model.eval()
    with torch.no_grad():
        want = model(**tiny_inputs()).logits
    return model, sel, want


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("targets", ["v", "qo"])
def test_peft_export_reproduces_logits(family, targets, tmp_path):
    model, sel, want = _trained(family, targets)
    export_peft(tmp_path / "peft", sel, model)
    base = tiny_model(family, seed=0)
    pm = peft.PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    with torch.no_grad():
        got = pm(**tiny_inputs()).logits
    assert (got - want).abs().max().item() <= 1e-5


def test_peft_export_refuses_all():
    model, sel, _ = _trained("bert", "all")
    with pytest.raises(ExportError, match="layer-norm"):
        export_peft("/nonexistent/never", sel, model)


@pytest.mark.parametrize("family", ["bert", "roberta", "opt", "qwen2", "gpt_neox", "llama"])
def test_merged_checkpoint_loads_in_plain_transformers(family, tmp_path):
    model, sel, want = _trained(family, "v")
    merge_checkpoint(tmp_path / "m", sel, model)
    cls = tf.AutoModelForSequenceClassification if family in ENCODERS else tf.AutoModelForCausalLM
    plain = cls.from_pretrained(str(tmp_path / "m")).eval()
    with torch.no_grad():
        got = plain(**tiny_inputs()).logits
    assert torch.equal(got, want)
    if family == "llama":
        assert plain.config.attention_bias is True
        assert torch.count_nonzero(plain.model.layers[0].self_attn.o_proj.bias) == 0


@pytest.mark.parametrize("family", ["gptj", "mistral", "phi3"])
def test_merge_refused_where_config_cannot_hold_biases(family, tmp_path):
    model, sel, _ = _trained(family, "v")
    with pytest.raises(ExportError, match="use the beft adapter"):
        merge_checkpoint(tmp_path / "m", sel, model)
    assert not (tmp_path / "m").exists()


def test_merge_qwen2_o_refused(tmp_path):
    model, sel, _ = _trained("qwen2", "o")
    with pytest.raises(ExportError):
        merge_checkpoint(tmp_path / "m", sel, model)
