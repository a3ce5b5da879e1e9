import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inprocess import needs_process, run_main
from paths import DATA_DIR, ROOT
from ports import free_port
from tiny import save_tiny
from tolerance import assert_agree, max_diff  # noqa: F401  (re-exported for the tests)

VENV_BIN = Path(sys.executable).parent
FAULT_ENTRY = (
    ROOT / "tests" / "train" / "fault_entry.py"
)  # launch(..., script=FAULT_ENTRY, env=faults)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        "bert": save_tiny("bert", root / "bert"),
        "bert_dropout": save_tiny("bert", root / "bert_do", dropout=0.1),
        "llama": save_tiny("llama", root / "llama"),
    }


@pytest.fixture(scope="session")
def need_data():
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")


BATCH, MAX_LENGTH = 8, 32
TOKENS = (
    BATCH * MAX_LENGTH
)  # terms of one step's backpropagated gradient under base_args (tolerance.py)
ZO_FACTOR = 1 / (2 * 1e-3)  # (L+ - L-) / (2 zo.eps) magnifies the losses' rounding (default zo.eps)


def base_args(model, out, **kw):
    args = {
        "model": model,
        "task": "sst2",
        "bias": "v",
        "data.n_train": 64,
        "data.n_eval": 32,
        "epochs": 2,
        "batch_size": BATCH,
        "lr": 1e-2,
        "data.max_length": MAX_LENGTH,
        "threads": 1,
        "output_dir": out,
    }
    args.update(kw)
    return [f"{k}={v}" for k, v in args.items()]


def launch(args, launcher="python", env=None, timeout=900, script=None):
    """Run launch/train.py (or `script`, which parses the same arguments) the way a user would;
    returns CompletedProcess, with .port the rendezvous port of a 2-rank launcher (a free one: runs
    started together must not share the default 29500). One process with neither a script nor fault
    injection: the same entry in this process (inprocess.run_main), no new Python."""
    e = {
        "BEFT_DATA_DIR": str(DATA_DIR),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        **(env or {}),
    }
    # the loop reads no fault variable: only the test-side entry does
    if needs_process(env) and script is None:
        raise ValueError(
            "BEFT_KILL_AT / BEFT_TERM_AFTER_STEP are read by tests/train/fault_entry.py: "
            "pass script=FAULT_ENTRY"
        )
    if launcher == "python" and script is None:
        from beft.commands.train import main

        return run_main(main, args, env=e, cwd=ROOT, argv0=str(ROOT / "launch" / "train.py"))
    script = str(script or ROOT / "launch" / "train.py")
    port = None if launcher == "python" else free_port()
    if launcher == "python":
        cmd = [sys.executable, script]
    elif launcher.startswith("deepspeed-cli:"):  # the deepspeed launcher itself
        ds_json = str(ROOT / "ds_configs" / f"{launcher.split(':')[1]}.json")
        cmd = [str(VENV_BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(port)]
        cmd += [script, "--config", ds_json]
    elif launcher.startswith("deepspeed:"):
        # the same two DeepSpeed ranks started by torchrun: the deepspeed launcher adds two Pythons
        # that import deepspeed before the ranks start (docs/testing.md); its form is tested with
        # "deepspeed-cli:" (test_distributed.py) and in the docs test (docs/usage.md)
        ds_json = str(ROOT / "ds_configs" / f"{launcher.split(':')[1]}.json")
        cmd = [str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(port)]
        cmd += [script, "--config", ds_json]
    elif launcher in ("fsdp", "ddp"):  # torchrun: --fsdp, or nothing asked (plain DDP)
        cmd = [
            str(VENV_BIN / "torchrun"),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            script,
            *(["--fsdp"] if launcher == "fsdp" else []),
        ]
    elif launcher.startswith("accelerate:"):  # a shipped accelerate config (2 processes)
        cmd = [
            str(VENV_BIN / "accelerate"),
            "launch",
            "--config_file",
            str(ROOT / "configs" / "accelerate" / f"{launcher.split(':')[1]}.yaml"),
            "--main_process_port",
            str(port),
            script,
        ]
    else:
        raise ValueError(launcher)
    p = subprocess.run(
        cmd + args,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **e},
        cwd=str(ROOT),
    )
    p.port = port
    return p


@pytest.fixture(scope="module")
def reference(tiny_dirs, need_data, tmp_path_factory):
    """The 1-process run of base_args on tiny BERT that the 2-rank runs must match."""
    out = tmp_path_factory.mktemp("ref") / "run"
    p = launch(base_args(tiny_dirs["bert"], out))
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def shm_buffers(port=None) -> set:
    """DeepSpeed's CPU all-reduce buffers in /dev/shm (deepspeed_allreduce_buffer_*_ADDR_PORT_RANK);
    port: only those of the run on that port (another run on this machine may hold its own now)."""
    names = glob.glob("/dev/shm/deepspeed_allreduce_buffer_*")
    return {n for n in names if port is None or n.rsplit("_", 2)[-2] == str(port)}


def result(out) -> dict:
    return json.loads((Path(out) / "result.json").read_text())


def adapter(out, name="adapter"):
    from beft.bias.adapter import read_adapter

    return read_adapter(Path(out) / name)[0]


def assert_runs_agree(a, b, *, lr=1e-2, reduction=TOKENS, factor=1.0, keys=None, what=""):
    """The adapters of two finished runs of the same base_args training (2 ranks and 1 process,
    two launchers, resumed and uninterrupted) agree within tolerance.assert_agree, for the steps
    the runs took (result.json); reduction: TOKENS (backpropagation) or BATCH with factor=ZO_FACTOR
    (zeroth order: the examples' loss differences); keys: only those tensors."""
    steps = result(a)["steps"]
    assert result(b)["steps"] == steps
    x, y = adapter(a), adapter(b)
    if keys is not None:
        x, y = {k: x[k] for k in keys}, {k: y[k] for k in keys}
    return assert_agree(
        x, y, steps=steps, reduction=reduction, lr=lr, factor=factor, what=what or f"{a} vs {b}"
    )
