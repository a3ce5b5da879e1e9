"""A run's adapter -> peft folder and merged checkpoint through launch/export.py."""

import shutil

import torch
import transformers as tf

from beft.bias.adapter import load_adapter
from inprocess import run_script
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
        r = _export(out, f"{kind}={tmp_path / kind}")
        assert r.returncode == 0, r.stderr
    plain = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "merge").eval()
    import peft

    pm = peft.PeftModel.from_pretrained(
        tf.AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]), str(tmp_path / "peft")
    ).eval()
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, want)
        assert (pm(input_ids=ids).logits - want).abs().max() <= 1e-5
    r = _export(out, "peft=a", "merge=b")
    assert r.returncode == 2 and "exactly one of" in r.stderr


def _export(*args):
    """launch/export.py ARGS, in this process."""
    return run_script(ROOT / "launch" / "export.py", args)


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _refused(r, *words):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_export_never_destroys_a_run_or_other_files(tiny_dirs, need_data, tmp_path):
    run = tmp_path / "run"
    p = launch(base_args(tiny_dirs["llama"], run, **{"data.n_train": 16, "epochs": 1}))
    assert p.returncode == 0, p.stderr[-3000:]
    other = tmp_path / "other_run"
    shutil.copytree(run, other)
    runs = {d: _snapshot(d) for d in (run, other)}
    assert {"result.json", "config.yaml", "metrics.jsonl"} <= set(runs[run])
    _refused(_export(run, f"merge={run}"), str(run), "source")  # the reported bug
    _refused(_export(run, f"peft={run}", "overwrite=true"), "source")
    _refused(_export(run / "adapter", f"peft={run}"), "source")  # output holds the source
    _refused(_export(run, f"peft={run / 'adapter' / 'p'}"), "source")  # output inside it
    _refused(_export(run, f"merge={other}"), str(other), "overwrite=true")
    _refused(_export(run, f"merge={other}", "overwrite=true"), "never replaced")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    _refused(
        _export(run, f"peft={precious}"), str(precious), "choose another path", "overwrite=true"
    )
    _refused(_export(run, f"peft={precious}", "overwrite=true"), "not a beft export")
    assert _snapshot(precious) == {"notes.txt": b"mine"}
    assert {d: _snapshot(d) for d in (run, other)} == runs
    new = tmp_path / "new"
    assert _export(run, f"peft={new}").returncode == 0
    first = _snapshot(new)
    _refused(_export(run, f"peft={new}"), "already exists")
    _refused(_export(run, f"peft={new}", "overwrite=maybe"), "overwrite='maybe'")
    r = _export(run, f"peft={new}", "overwrite=true")
    assert r.returncode == 0, r.stderr
    second = _snapshot(
        new
    )  # peft writes target_modules from a set: its order varies between processes
    assert sorted(second) == sorted(first)
    assert second["adapter_model.safetensors"] == first["adapter_model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "other_run", "precious", "run"]
    r = _export("--help")
    assert r.returncode == 0 and "overwrite=true" in r.stdout
