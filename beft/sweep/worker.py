"""What one sweep job runs: the run directory's config.yaml, always with resume=true.

launcher python: the training loop in this process. torchrun / deepspeed: nproc ranks started
inside the job's allocation, each running `python -m beft.sweep.worker CONFIG`.
A run that already holds result.json is returned as is (a late requeue never trains twice).
Every start appends one line to <run_dir>/attempts.jsonl (job id, step it resumed from).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from beft.outputs import RunDir


class RunFailed(RuntimeError):
    pass


def job_id_from_env() -> str | None:
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


def checkpoint_step(rd: RunDir) -> int:
    meta = rd.last_checkpoint / "meta.json"
    try:
        return int(json.loads(meta.read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def run(run_dir: str, launcher: dict) -> dict:
    rd = RunDir(run_dir)
    if rd.is_finished():
        return json.loads(rd.result.read_text())
    if not rd.config.is_file():
        raise RunFailed(f"{rd.config} is missing (the sweep writes it at submission)")
    with open(rd.path / "attempts.jsonl", "a") as f:
        f.write(json.dumps({"job_id": job_id_from_env(), "start_step": checkpoint_step(rd), "time": time.time(),
                            "host": socket.gethostname(),
                            "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}) + "\n")
    rd.recover_checkpoint()
    kind, nproc = launcher.get("kind", "python"), int(launcher.get("nproc", 1))
    if kind == "python":
        train(str(rd.config))
    else:
        cmd = launch_command(kind, nproc, str(rd.config), launcher.get("ds_config"))
        print("launching: " + " ".join(cmd), flush=True)
        code = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}).returncode
        if code != 0:
            raise RunFailed(f"{kind} exited with status {code} for {rd.path}")
    if not rd.is_finished():
        raise RunFailed(f"training ended without {rd.result}")
    return json.loads(rd.result.read_text())


def launch_command(kind: str, nproc: int, config: str, ds_config: str | None) -> list[str]:
    """Ranks on this node (the job's allocation); rendezvous on a free local port."""
    module = ["-m", "beft.sweep.worker", config]
    if kind == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                *module]
    if kind == "deepspeed":
        exe = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or shutil.which("deepspeed")
        if exe is None:
            raise RunFailed("launcher deepspeed: the deepspeed command is not installed")
        return [exe, "--num_gpus", str(nproc), "--master_port", str(_free_port()), "--module",
                "beft.sweep.worker", config]
    raise RunFailed(f"unknown launcher {kind!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(config: str) -> dict | None:
    from beft.config import load_config
    from beft.train import Trainer
    return Trainer(load_config(config, resume=True, overwrite=False)).run()


if __name__ == "__main__":   # one rank under torchrun / deepspeed
    args = [a for a in sys.argv[1:] if not a.startswith("--local_rank") and not a.startswith("--local-rank")]
    train(args[0])
