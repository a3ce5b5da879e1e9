"""Tiny sweeps for tests: a tiny random BERT (real MiniLM tokenizer), real GLUE rows, few steps."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from inprocess import run_script
from paths import DATA_DIR, ROOT
from tiny import save_tiny

SWEEP = [sys.executable, str(ROOT / "slurm" / "sweep.py")]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    return str(save_tiny("bert", tmp_path_factory.mktemp("sweep_tiny") / "bert"))


@pytest.fixture(scope="session")
def slurm():
    from beft.sweep.submitit_exec import sinfo_ok

    if not sinfo_ok():
        pytest.skip(
            "no SLURM: `sinfo` does not answer (start ../shared/tools/slurm-local/start.sh)"
        )


def tiny_spec(
    tmp_path: Path,
    model: str,
    name: str = "tiny",
    tasks=("sst2", "rte"),
    targets=("q", "v"),
    seeds=(0, 1),
    **config,
) -> Path:
    """A 2 x 2 x 2 sweep of tiny runs; config entries override the defaults below."""
    base = {
        "data_dir": str(DATA_DIR),
        "data.n_train": 16,
        "data.n_eval": 16,
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-2,
        "data.max_length": 32,
        "threads": 1,
        "checkpoint.every_steps": 1,
        "log_every": 1,
    }
    base.update(config)
    spec = {
        "name": name,
        "root": str(tmp_path / "sweep"),
        "grid": {"model": [model], "task": list(tasks), "bias": list(targets), "seed": list(seeds)},
        "config": base,
        "per_task": {tasks[0]: {"lr": 2e-2}},
        "launcher": {"kind": "python"},
        "slurm": {
            "partition": "debug",
            "cpus_per_task": 1,
            "mem_gb": 1.5,
            "time_min": 10,
            "array_parallelism": 2,
            "signal_delay_s": 30,
        },
        "local": {"parallelism": 2},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep(*args, timeout=300) -> subprocess.CompletedProcess:
    """slurm/sweep.py ARGS; a --dry-run (it starts nothing) in this process."""
    if "--dry-run" in args:
        return run_script(SWEEP[1], args, cwd=ROOT)
    return subprocess.run(
        SWEEP + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
    )


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout
    return set(out.split())


def jobs(root: Path) -> dict:
    return json.loads((root / "jobs.json").read_text())["runs"]
