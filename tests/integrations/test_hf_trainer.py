"""beft's biases trained by transformers' Trainer: BiasCallback keeps fused slices frozen under
weight decay and writes the adapter; 2 DDP ranks (torchrun) and 2 DeepSpeed ZeRO-2 ranks train
what one process trains."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers as tf

from beft.bias import apply_bias
from beft.bias.adapter import load_adapter, read_adapter
from beft.integrations.hf_trainer import BiasCallback
from paths import DATA_DIR, ROOT
from ports import free_port
from tiny import save_tiny, tiny_inputs, tiny_model
from tolerance import assert_agree


def _data(n=8):
    x = tiny_inputs(batch=n, length=10, seed=3)
    labels = torch.arange(n) % 2
    return [
        {
            "input_ids": x["input_ids"][i],
            "attention_mask": x["attention_mask"][i],
            "labels": labels[i],
        }
        for i in range(n)
    ]


def _train(tmp_path, callback: bool):
    model = tiny_model("gpt_neox", head="cls")
    model.config.pad_token_id = 0
    sel = apply_bias(model, "v", head=["score"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = list(sel.trainable_parameters().values())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.5)  # decay on every trained tensor
    args = tf.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=3,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        lr_scheduler_type="constant",
    )
    trainer = tf.Trainer(
        model=model,
        args=args,
        train_dataset=_data(),
        optimizers=(opt, None),
        callbacks=[BiasCallback(sel)] if callback else [],
    )
    trainer.train()
    return model, sel, before


def test_fused_slices_stay_frozen_and_the_adapter_reloads(tmp_path):
    model, sel, before = _train(tmp_path / "with", callback=True)
    for s in sel.sites:
        b, b0 = s.module.bias.detach(), before[s.param_name]
        keep = torch.ones_like(b, dtype=torch.bool)
        keep[s.index] = False
        assert torch.equal(b[keep], b0[keep]), f"{s.param_name}: q/k entries moved"
        assert not torch.equal(b[s.index], b0[s.index]), f"{s.param_name}: v entries did not train"
    trained = set(sel.trainable_parameters())
    for n, p in model.named_parameters():
        if n not in trained:
            assert torch.equal(p.detach(), before[n]), f"frozen {n} moved"
    tensors, meta = read_adapter(tmp_path / "with" / "adapter")
    assert set(tensors) == trained and meta["fused"]
    fresh = tiny_model("gpt_neox", head="cls")
    fresh.config.pad_token_id = 0
    load_adapter(fresh, tmp_path / "with" / "adapter")
    x = tiny_inputs(batch=2)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(**x).logits, model.eval()(**x).logits)


def test_without_the_callback_weight_decay_moves_the_frozen_slices(tmp_path):
    """The control: what BiasCallback.on_step_end prevents (so the test above can fail)."""
    model, sel, before = _train(tmp_path / "without", callback=False)
    s = sel.sites[0]
    keep = torch.ones_like(s.module.bias, dtype=torch.bool)
    keep[s.index] = False
    assert not torch.equal(s.module.bias.detach()[keep], before[s.param_name][keep])


def test_zero3_is_refused_in_one_line(tmp_path, monkeypatch):
    """ZeRO-3 would partition the added biases, which the Trainer never gathers for the callback."""
    monkeypatch.setattr("transformers.integrations.is_deepspeed_zero3_enabled", lambda: True)
    model = tiny_model("bert", head="cls")
    cb = BiasCallback(apply_bias(model, "v", head=["classifier"]))
    with pytest.raises(
        ValueError, match=r"^BiasCallback: DeepSpeed ZeRO-3 .* use ZeRO-2 here"
    ) as e:
        cb.on_train_begin(tf.TrainingArguments(output_dir=str(tmp_path), use_cpu=True), None, None)
    assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.dist
def test_two_ranks_train_what_one_process_trains(tmp_path):
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    model = save_tiny("bert", tmp_path / "bert")
    script = str(ROOT / "examples" / "hf_trainer.py")
    # 8 examples = one global batch: every step sees all of them, whatever order each sampler draws
    common = [
        script,
        "--model",
        str(model),
        "--data",
        str(DATA_DIR / "glue" / "SST-2"),
        "--n_train",
        "8",
        "--batch_size",
        "8",
        "--max_steps",
        "3",
        "--lr",
        "1e-2",
        "--max_length",
        "32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    port = free_port()
    runs = {
        "one": [sys.executable],
        "two": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
        ],
        "zero2": [
            str(Path(sys.executable).parent / "deepspeed"),
            "--num_gpus",
            "2",
            "--master_port",
            str(free_port()),
        ],
    }
    for name, prefix in runs.items():
        extra = ["--deepspeed", str(ROOT / "ds_configs" / "zero2.json")] if name == "zero2" else []
        p = subprocess.run(
            prefix + common + extra + ["--out", str(tmp_path / name)],
            capture_output=True,
            text=True,
            env={**env, "DS_ACCELERATOR": "cpu"},
            timeout=900,
            cwd=str(ROOT),
        )
        assert p.returncode == 0, p.stderr[-3000:]
    one, _ = read_adapter(tmp_path / "one" / "adapter")
    for name, what in (("two", "2 DDP ranks"), ("zero2", "2 DeepSpeed ZeRO-2 ranks")):
        got, _ = read_adapter(tmp_path / name / "adapter")
        assert_agree(
            one, got, steps=3, reduction=8 * 32, lr=1e-2, what=f"{what} vs 1 process (HF Trainer)"
        )
        assert (tmp_path / name / "peft" / "adapter_model.safetensors").is_file()
