"""Launchers users know, 2 CPU ranks (gloo): plain DDP under torchrun, and accelerate launch with
the shipped configs (configs/accelerate/), which select beft's ddp / fsdp / deepspeed backend from
accelerate's environment. Each ends with the biases of the 1-process run (dropout off)."""

import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

from paths import ROOT
from tiny import save_tiny
from train_helpers import (
    BATCH,
    TOKENS,
    VENV_BIN,
    ZO_FACTOR,
    assert_agree,
    assert_runs_agree,
    base_args,
    launch,
    result,
)

pytestmark = [pytest.mark.dist, pytest.mark.slow]
BACKEND = {
    "ddp": "ddp",
    "accelerate:ddp": "ddp",
    "accelerate:fsdp": "fsdp",
    "accelerate:deepspeed_zero3": "deepspeed",
}


@pytest.mark.parametrize("launcher", list(BACKEND))
def test_launcher_two_ranks_equal_one_rank(launcher, reference, tiny_dirs, tmp_path):
    out = tmp_path / "run"
    p = launch(base_args(tiny_dirs["bert"], out), launcher=launcher)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    r = result(out)
    assert (r["world_size"], r["backend"]) == (2, BACKEND[launcher])
    shards = r["sharding_rank0"]
    if BACKEND[launcher] == "ddp":  # the frozen base is replicated, not sharded
        assert shards["frozen_local_numel"] == shards["frozen_full_numel"]
    else:
        assert shards["frozen_local_numel"] <= 0.55 * shards["frozen_full_numel"]
    assert_runs_agree(out, reference)
    assert r["final"]["accuracy"] == result(reference)["final"]["accuracy"]


def test_accelerate_one_process_for_two_is_an_error(tiny_dirs, tmp_path):
    """Without GPUs, `accelerate launch --num_processes 2` (no --multi_gpu, no config) starts one
    process: a one-line error naming the fix, nothing written, instead of a silent 1-rank run."""
    cmd = [
        str(VENV_BIN / "accelerate"),
        "launch",
        "--num_processes",
        "2",
        str(ROOT / "launch" / "train.py"),
        *base_args(tiny_dirs["bert"], tmp_path / "run"),
    ]
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "OMP_NUM_THREADS": "1",
    }  # no default accelerate config
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=str(ROOT))
    assert p.returncode != 0 and not (tmp_path / "run").exists(), (p.stdout + p.stderr)[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--multi_gpu" in errors[0], p.stderr[-3000:]


def test_ddp_keeps_frozen_slices_of_a_fused_bias(tmp_path, need_data):
    """GPT-NeoX fuses q, k, v into one bias; bias=v trains a slice of it. Weight decay would move
    the
    frozen q / k entries (their gradient is masked, not their decay): under DDP, as in one process,
    they are put back after each step and the fused tensors end as the 1-process run's."""
    model = save_tiny("gpt_neox", tmp_path / "neox")
    weights = model / "model.safetensors"  # from_config leaves biases at 0, which decay cannot move
    tensors = load_file(weights)
    for name, t in tensors.items():
        if name.endswith("query_key_value.bias"):
            t.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
    save_file(tensors, weights, metadata={"format": "pt"})
    args = lambda o: base_args(
        model, o, **{"optim.weight_decay": 0.5, "data.n_train": 32, "data.n_eval": 16}
    )
    assert launch(args(tmp_path / "one")).returncode == 0
    p = launch(args(tmp_path / "two"), launcher="ddp")
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    state = lambda o: torch.load(o / "checkpoints" / "last" / "state.pt", weights_only=True)[
        "params"
    ]
    one, two = state(tmp_path / "one"), state(tmp_path / "two")
    fused = [n for n in one if n.endswith("query_key_value.bias")]
    assert fused and set(one) == set(two)
    assert_agree(one, two, steps=result(tmp_path / "two")["steps"], reduction=TOKENS, lr=1e-2)


def test_ddp_zeroth_order_equals_one_process(tiny_dirs, need_data, tmp_path):
    """optim.kind=zo under DDP: every rank perturbs its whole replica with the same z and applies
    the
    rank-averaged projected gradient; the added GQA v biases equal a 1-process run's."""
    zo = {"optim.kind": "zo", "zo.update": "adam", "lr": "1e-2"}
    assert launch(base_args(tiny_dirs["llama"], tmp_path / "one", **zo)).returncode == 0
    p = launch(base_args(tiny_dirs["llama"], tmp_path / "two", **zo), launcher="ddp")
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert result(tmp_path / "two")["backend"] == "ddp"
    assert_runs_agree(tmp_path / "one", tmp_path / "two", reduction=BATCH, factor=ZO_FACTOR)
