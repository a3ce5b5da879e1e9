import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paths import DATA_DIR, ROOT
from tiny import save_tiny

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"bert": save_tiny("bert", root / "bert"), "bert_dropout": save_tiny("bert", root / "bert_do", dropout=0.1),
            "llama": save_tiny("llama", root / "llama")}


@pytest.fixture(scope="session")
def need_data():
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")


def base_args(model, out, **kw):
    args = {"model": model, "task": "sst2", "bias": "v", "data.n_train": 64, "data.n_eval": 32, "epochs": 2,
            "batch_size": 8, "lr": 1e-2, "data.max_length": 32, "threads": 1, "output_dir": out}
    args.update(kw)
    return [f"{k}={v}" for k, v in args.items()]


def launch(args, launcher="python", env=None, timeout=900):
    """Run launch/train.py the way a user would; returns CompletedProcess."""
    script = str(ROOT / "launch" / "train.py")
    if launcher == "python":
        cmd = [sys.executable, script]
    elif launcher.startswith("deepspeed"):
        cmd = [str(VENV_BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(_port()), script,
               "--config", str(ROOT / "ds_configs" / f"{launcher.split(':')[1]}.json")]
    elif launcher == "fsdp":
        cmd = [str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_port()), script, "--fsdp"]
    else:
        raise ValueError(launcher)
    e = {**os.environ, "BEFT_DATA_DIR": str(DATA_DIR), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
         "DS_ACCELERATOR": "cpu", **(env or {})}
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, env=e, cwd=str(ROOT))


def _port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def result(out) -> dict:
    return json.loads((Path(out) / "result.json").read_text())


def adapter(out, name="adapter"):
    from beft.bias.adapter import read_adapter
    return read_adapter(Path(out) / name)[0]


def max_diff(a, b):
    assert sorted(a) == sorted(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)
