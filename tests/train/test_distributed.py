"""Real 2-rank CPU runs (gloo): DeepSpeed ZeRO-2/3 under the deepspeed launcher, FSDP2 under
torchrun. Each must end with the biases of a 1-process run with the same global batch.
"deepspeed-cli:X" starts the ranks with the deepspeed launcher; "deepspeed:X" with torchrun (the
same ranks, two fewer Pythons to start: train_helpers.launch)."""

import json
from pathlib import Path

import pytest
import torch

from train_helpers import (
    FAULT_ENTRY,
    adapter,
    assert_runs_agree,
    base_args,
    launch,
    result,
    shm_buffers,
)

pytestmark = [pytest.mark.dist, pytest.mark.slow]
LAUNCHERS = ["deepspeed-cli:zero2", "deepspeed-cli:zero3", "deepspeed-cli:zero3_offload", "fsdp"]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_two_ranks_equal_one_rank(launcher, reference, tiny_dirs, tmp_path):
    out = tmp_path / "run"
    shm = shm_buffers()
    p = launch(base_args(tiny_dirs["bert"], out), launcher=launcher)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    # DeepSpeed's CPU all-reduce buffers (66 MB per rank) are unlinked at exit, not left in RAM
    assert not shm_buffers(p.port) - shm
    r = result(out)
    assert r["world_size"] == 2
    assert r["backend"] == ("fsdp" if launcher == "fsdp" else "deepspeed")
    shards = r["sharding_rank0"]
    if launcher == "deepspeed-cli:zero2":  # ZeRO-2 partitions gradients and optimizer states only
        assert shards["frozen_local_numel"] == shards["frozen_full_numel"]
    else:  # frozen weights really partitioned
        assert shards["frozen_local_numel"] <= 0.55 * shards["frozen_full_numel"]
    if launcher.startswith("deepspeed-cli:zero3"):  # ... already at load: no full copy per rank
        assert shards["loaded_local_numel"] <= 0.55 * shards["loaded_full_numel"]
    assert_runs_agree(out, reference)
    ref = result(reference)
    assert r["final"]["accuracy"] == ref["final"]["accuracy"]
    assert r["trainable"]["bias"] == ref["trainable"]["bias"]


@pytest.mark.parametrize("launcher", ["deepspeed:zero3", "fsdp", "ddp"])
def test_two_rank_kill_and_resume(launcher, tiny_dirs, need_data, tmp_path):
    args = lambda out: base_args(
        tiny_dirs["bert_dropout"], out, **{"checkpoint.every_steps": 3, "resume": "true"}
    )
    assert launch(args(tmp_path / "a"), launcher=launcher).returncode == 0
    p = launch(
        args(tmp_path / "b"), launcher=launcher, env={"BEFT_KILL_AT": "step:11"}, script=FAULT_ENTRY
    )
    assert p.returncode != 0 and not (tmp_path / "b" / "result.json").exists()
    assert json.loads((tmp_path / "b/checkpoints/last/meta.json").read_text())["step"] == 9
    p = launch(args(tmp_path / "b"), launcher=launcher)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert "resumed from step 9" in p.stdout
    assert_runs_agree(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("launcher", ["deepspeed:zero3", "fsdp"])
def test_sigterm_on_one_rank_stops_all_at_the_same_step(launcher, tiny_dirs, need_data, tmp_path):
    """Only the last rank gets SIGTERM; the flag is all-reduced, so every rank checkpoints step 11
    and exits."""
    args = lambda out: base_args(
        tiny_dirs["bert"], out, **{"checkpoint.every_steps": 5, "resume": "true"}
    )
    p = launch(
        args(tmp_path / "b"),
        launcher=launcher,
        env={"BEFT_TERM_AFTER_STEP": "11"},
        script=FAULT_ENTRY,
        timeout=300,
    )
    assert p.returncode != 0 and "after step 11" in p.stderr, (p.stdout + p.stderr)[-3000:]
    assert json.loads((tmp_path / "b/checkpoints/last/meta.json").read_text())["step"] == 11
    p = launch(args(tmp_path / "b"), launcher=launcher)
    assert p.returncode == 0 and "resumed from step 11" in p.stdout, (p.stdout + p.stderr)[-3000:]
    assert result(tmp_path / "b")["steps"] == 16


@pytest.mark.parametrize(
    "launcher,method", [("deepspeed:zero3", "dora"), ("deepspeed:zero3", "pissa"), ("fsdp", "lora")]
)
def test_reparam_two_ranks_equal_one_rank(launcher, method, tiny_dirs, need_data, tmp_path):
    """Bias deltas through DoRA / PiSSA (which need the gathered b0: ZeRO-3 holds shards) and LoRA:
    the 2-rank adapter (b0 + delta) matches the 1-process one, and differs from b0 (it trained)."""
    args = lambda o: base_args(tiny_dirs["bert"], o, method=method, lr="5e-2")
    assert launch(args(tmp_path / "ref")).returncode == 0
    p = launch(args(tmp_path / "two"), launcher=launcher)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    r, ref = result(tmp_path / "two"), result(tmp_path / "ref")
    assert (
        r["world_size"] == 2
        and r["trainable"] == ref["trainable"]
        and r["trainable"]["reparam"]["kind"] == method
    )
    assert_runs_agree(tmp_path / "two", tmp_path / "ref", lr=5e-2)
    a = adapter(tmp_path / "two")
    from safetensors.torch import load_file

    base = {
        k: t for f in Path(tiny_dirs["bert"]).glob("*.safetensors") for k, t in load_file(f).items()
    }
    name = next(n for n in a if n.endswith("value.bias"))
    b0 = next(t for k, t in base.items() if k.endswith(name.split("encoder.", 1)[-1]))
    assert not torch.allclose(a[name], b0)


def test_decoder_gqa_zero3_adds_biases(tiny_dirs, need_data, tmp_path):
    """A bias-free GQA LLaMA under ZeRO-3: added v biases train and gather to full size."""
    ref, out = tmp_path / "ref", tmp_path / "z3"
    args = lambda o: base_args(tiny_dirs["llama"], o, **{"data.n_train": 32, "data.n_eval": 16})
    assert launch(args(ref)).returncode == 0
    p = launch(args(out), launcher="deepspeed:zero3")
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    a = adapter(out)
    assert {t.shape[0] for t in a.values()} == {32}  # 2 kv heads x 16, not hidden 64
    assert_runs_agree(out, ref)
