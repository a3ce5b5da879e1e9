"""A run's adapter -> peft folder and merged checkpoint through launch/export.py."""
import subprocess
import sys

import torch
import transformers as tf

from beft.bias.adapter import load_adapter
from paths import ROOT
from train_helpers import base_args, launch


def test_export_peft_and_merge_from_a_run(tiny_dirs, need_data, tmp_path):
    out = tmp_path / "run"
    p = launch(base_args(tiny_dirs["llama"], out, **{"data.n_train": 16, "epochs": 1}))
    assert p.returncode == 0, p.stderr[-3000:]
    ids = torch.tensor([[5, 17, 300, 42, 7]])
    ref = tf.AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]).eval()
    load_adapter(ref, out / "adapter")
    with torch.no_grad():
        want = ref(input_ids=ids).logits
    for kind in ("peft", "merge"):
        r = subprocess.run([sys.executable, str(ROOT / "launch" / "export.py"), str(out), f"{kind}={tmp_path / kind}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    plain = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "merge").eval()
    import peft
    pm = peft.PeftModel.from_pretrained(tf.AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]),
                                        str(tmp_path / "peft")).eval()
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, want)
        assert (pm(input_ids=ids).logits - want).abs().max() <= 1e-5
    r = subprocess.run([sys.executable, str(ROOT / "launch" / "export.py"), str(out), "peft=a", "merge=b"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "exactly one of" in r.stderr
