"""Every method of beft/methods.py trains (or evaluates) a tiny model end to end through the one
loop, and writes result.json with the metric and the trainable count."""

import json

import pytest
import torch

from beft.bias.adapter import load_adapter, read_adapter
from beft.config import load_config
from beft.models import load_model
from beft.train import Trainer
from paths import DATA_DIR


def run(model_dir, out, **kw):
    args = {
        "model": str(model_dir),
        "task": "sst2",
        "bias": "v",
        "data.n_train": 32,
        "data.n_eval": 16,
        "epochs": 1,
        "batch_size": 8,
        "lr": 1e-2,
        "data.max_length": 32,
        "threads": 1,
        "output_dir": str(out),
        "data_dir": str(DATA_DIR),
    }
    args.update(kw)
    return Trainer(load_config(None, {k: str(v) for k, v in args.items()})).run()


# method -> (model, trainable count of its non-head part on the tiny model: hidden 64, 2 layers)
CASES = {
    "lora": ("bert", 2 * 16),  # b_v 64 -> 8 x 8, rank 1: 8 + 8 per layer
    "vera": ("bert", 2 * 16),  # 8 scaling entries + rank-8 vector
    "vera1d": ("bert", 2),  # one scalar per bias vector
    "dora": ("bert", 2 * 17),  # LoRA + one magnitude
    "pissa": ("bert", 2 * 16),
    "bitfit": ("bert", None),
    "rand_uniform": ("bert", 2 * 64),  # as many entries as b_v
    "full": ("bert", None),
    "peft_lora": ("bert", 2 * 2 * 8 * (64 + 64)),  # q and v, r=8: A (8 x 64) + B (64 x 8)
    "prefix": ("llama", None),
    "zero_shot": ("llama", 0),
    "icl": ("llama", 0),
}


@pytest.mark.parametrize("method", list(CASES))
def test_method_end_to_end(method, tiny_dirs, need_data, tmp_path):
    fam, expected = CASES[method]
    out = tmp_path / method
    run(
        tiny_dirs[fam],
        out,
        method=method,
        **({"icl.k": 2, "data.max_length": 128} if method == "icl" else {}),
    )
    saved = json.loads((out / "result.json").read_text())
    assert saved["status"] == "finished" and saved["method"] == method
    assert 0.0 <= saved["final"]["accuracy"] <= 1.0
    c = saved["trainable"]
    if method in ("zero_shot", "icl"):
        assert (
            saved["steps"] == 0
            and c["trainable"] == 0
            and len(saved["evals"] if "evals" in saved else [1]) == 1
        )
    else:
        assert saved["steps"] == 4 and c["trainable"] > 0
    if expected is not None:
        assert c["trainable"] - c["head"] == expected
    if method == "full":
        assert c["trainable"] == c["total"]
    if method == "prefix":
        assert (
            c["trainable"] == 16 * 2 * 2 * 32
        )  # tokens x layers x (k, v) x kv width (GQA: 2 heads x 16)


@pytest.mark.parametrize("method", ["lora", "pissa", "dora"])
def test_reparam_adapter_holds_effective_biases(method, tiny_dirs, need_data, tmp_path):
    """The adapter is in the core format (b_0 + delta): load_adapter on a fresh base reproduces the
    trained model's logits."""
    out = tmp_path / method
    t = Trainer(
        load_config(
            None,
            {
                "model": str(tiny_dirs["bert"]),
                "task": "sst2",
                "method": method,
                "data.n_train": "32",
                "data.n_eval": "16",
                "epochs": "1",
                "batch_size": "8",
                "lr": "5e-2",
                "threads": "1",
                "output_dir": str(out),
                "data_dir": str(DATA_DIR),
                "data.max_length": "32",
            },
        )
    )
    t.run()
    tensors, meta = read_adapter(out / "adapter")
    assert meta["method"] == method and meta["targets"] == ["v"]
    fresh, tok, _ = load_model(str(tiny_dirs["bert"]), "encoder", num_labels=2)
    b0 = {n: p.detach().clone() for n, p in fresh.named_parameters() if n in tensors}
    load_adapter(fresh, out / "adapter")
    moved = [n for n in b0 if "value.bias" in n and not torch.equal(b0[n], tensors[n])]
    assert len(moved) == 2  # the delta was trained and written
    batch = t.task.collate(tok, t.splits.eval[:8], 32)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    t.model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(t.model(**inputs).logits, fresh(**inputs).logits, atol=1e-6)


def test_rand_uniform_changes_only_its_entries(tiny_dirs, need_data, tmp_path):
    out = tmp_path / "ru"
    run(tiny_dirs["bert"], out, method="rand_uniform", lr=5e-2)
    tensors, _ = read_adapter(out / "adapter")
    fresh, _, _ = load_model(str(tiny_dirs["bert"]), "encoder", num_labels=2)
    base = dict(fresh.named_parameters())
    changed = sum(
        int((tensors[n] != base[n].detach()).sum())
        for n in tensors
        if n.endswith(".bias") and not n.startswith("classifier")
    )
    assert 0.8 * 128 < changed <= 128  # 2 x 64 entries (b_v's count), spread over all biases


def test_icl_prompt_holds_demonstrations():
    from beft.tasks.prompts import CHOICE, with_demonstrations

    p = with_demonstrations(
        CHOICE["sst2"],
        [{"text_a": "good film .", "label": 1}, {"text_a": "bad .", "label": 0}],
        "\n\n",
    )
    assert (
        p.prompt({"text_a": "fine ."})
        == "good film . It was great\n\nbad . It was terrible\n\nfine . It was"
    )
    assert p.candidates({}) == [" terrible", " great"]


def test_eval_only_writes_no_optimizer_state(tiny_dirs, need_data, tmp_path):
    out = tmp_path / "zs"
    r = run(tiny_dirs["llama"], out, method="zero_shot")
    assert r["steps"] == 0 and r["best_epoch"] == 0
    assert not (out / "checkpoints").exists() and not (out / "adapter").exists()
