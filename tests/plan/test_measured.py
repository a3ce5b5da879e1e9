"""The planner against measured CPU peaks: each config runs 2 training steps in a fresh process
(bench/throughput.py --peak); peak = VmHWM - VmRSS once the model, optimizer and inputs exist,
with glibc returning freed tensors to the OS (MALLOC_MMAP_THRESHOLD_), so RSS follows live
tensors, and every weight paged in before the baseline. The planner's per-GPU peak minus its
weights must be within 20%."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from beft.plan import Method, Setup, load_arch, outer_params, plan
from paths import ROOT

ZO = {"optim": "zo", "zo_update": "adam", "zo_head": "freeze"}  # bench/throughput.py's bv_zo step
# model, bench setting, planner method, batch, seq, attention kernel on this CPU, Setup extras
CASES = [
    ("minilm", "full", "full", 16, 128, "math", {}),  # sdpa with dropout falls back to math on CPU
    ("minilm", "bv", "bias", 16, 128, "math", {}),
    ("smollm2", "bv", "bias", 4, 256, "flash", {}),  # causal, no dropout: CPU flash kernel
    ("smollm2", "full", "full", 4, 256, "flash", {}),
    ("minilm", "bv_ckpt", "bias", 16, 128, "math", {"ckpt": True}),
    ("minilm", "bv_zo", "bias", 16, 128, "flash", ZO),  # eval mode, no dropout: CPU flash kernel
    ("smollm2", "bv_ckpt", "bias", 4, 256, "flash", {"ckpt": True}),
    # bench/throughput.py calls model(**batch): transformers' default use_cache=True builds the KV
    # cache
    ("smollm2", "bv_zo", "bias", 4, 256, "flash", {**ZO, "kv_cache": True}),
]


def measured(model: str, setting: str) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "throughput.py"), "--peak", model, setting],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,setting,method,batch,seq,kernel,extra", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_planner_within_20_percent_of_measured_peak(
    model, setting, method, batch, seq, kernel, extra
):
    from beft.models import resolve

    try:
        resolve(model)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    got = measured(model, setting)
    a = load_arch(model)
    p = plan(
        a,
        Method.parse(method, "v"),
        Setup(dtype="fp32", batch=batch, seq=seq, kernel=kernel, **extra),
    )
    # the measured baseline already holds the weights (loaded before it): the training-time peak
    predicted = p["train_peak"] - p["weights"]
    # the bench's ZO step trains the biases alone (a new head stays frozen)
    head = outer_params(a)["head"] if extra.get("zo_head") == "freeze" and a.encoder else 0
    assert got["trainable"] == p["trainable"] - head
    assert p["weights"] == pytest.approx(got["weights"], rel=0.05)
    ratio = predicted / got["peak_delta"]
    print(
        f"{model}/{setting}: planned {predicted / 2**20:.0f} MiB, measured"
        f" {got['peak_delta'] / 2**20:.0f} MiB, ratio {ratio:.3f}"
    )
    assert 0.8 <= ratio <= 1.2


@pytest.mark.slow
def test_peak_worker_measures_at_the_asked_shape():
    """--batch / --seq reach the fresh peak-memory process (docs/performance.md's own shape)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "bench" / "throughput.py"), "--peak", "minilm", "bv"]
    out = subprocess.run(
        cmd + ["--batch", "2", "--seq", "16"], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert (got["batch"], got["seq"], got["model"]) == (2, 16, "minilm")
    bad = subprocess.run(cmd + ["--batch", "0"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "0 is not an integer >= 1" in bad.stderr
