"""bench/gpu_check.sh: without a GPU it says so and exits 0; its code paths run on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from paths import ROOT


def test_no_cuda_device_exits_zero_with_message():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "no CUDA device" in out.stdout


@pytest.mark.slow
def test_cpu_smoke_runs_every_setting():
    pytest.importorskip("peft")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    labels = " ".join(table)
    for want in ("b_v (beft), bf16", "LoRA r=8", "full fine-tuning"):
        assert want in labels
    assert "out of memory" not in out.stdout
