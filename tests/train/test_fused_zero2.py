"""ZeRO-2 keeps the unselected slices of a partially trained fused qkv bias bit-equal to the base
with weight decay > 0 (the ZeRO-3 refusal recommends ZeRO-2 for exactly this case): DeepSpeed's
fp32 master copy must be restored too, not only the model's parameter."""

from pathlib import Path

import pytest
import torch
import transformers as tf
from safetensors.torch import load_file, save_file

from beft.bias import apply_bias
from tiny import save_tiny
from train_helpers import adapter, base_args, launch

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def test_zero2_keeps_unselected_fused_slices(need_data, tmp_path):
    model_dir = save_tiny("gpt_neox", tmp_path / "neox")
    ckpt = next(Path(model_dir).glob("*.safetensors"))
    sd = load_file(ckpt)
    g = torch.Generator().manual_seed(0)
    for k in sd:  # non-zero base biases: weight decay moves them (a zero bias stays zero)
        if k.endswith("query_key_value.bias"):
            sd[k] = torch.randn(sd[k].shape, generator=g) * 0.1
    save_file(sd, ckpt, metadata={"format": "pt"})
    out = tmp_path / "z2"
    p = launch(
        base_args(
            model_dir,
            out,
            **{"optim.weight_decay": 0.5, "data.n_train": 32, "data.n_eval": 16, "epochs": 1},
        ),
        launcher="deepspeed:zero2",
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    sel = apply_bias(tf.AutoModelForCausalLM.from_pretrained(model_dir), "v")
    trained = adapter(out)
    assert sel.sites and all(s.partial for s in sel.sites)
    for site in sel.sites:
        base = sd[next(k for k in sd if k.endswith(site.param_name.split("gpt_neox.", 1)[-1]))]
        got = trained[site.param_name]
        frozen = torch.ones(base.numel(), dtype=torch.bool)
        frozen[site.index] = False
        assert torch.equal(
            got[frozen], base[frozen]
        ), f"{site.param_name}: unselected q/k entries moved"
        assert not torch.equal(got[~frozen], base[~frozen])  # the v slice trained
