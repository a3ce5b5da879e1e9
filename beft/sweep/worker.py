"""What one sweep job runs: the run directory's config.yaml, always with resume=true.

launcher python: the training loop in this process. torchrun / deepspeed: nproc ranks started
inside the job's allocation, each running `python -m beft.sweep.worker CONFIG`.
Multi-node (slurm.nodes > 1): submitit starts this on every node (srun, one task per node); each
starts its node's nproc ranks with torchrun --nnodes/--node_rank and a static rendezvous on the
allocation's first host (DeepSpeed ranks too: they read the same torch.distributed environment).
A run that already holds result.json is returned as is (a late requeue never trains twice).
Every start appends one line to <run_dir>/attempts.jsonl (job id, step it resumed from; node 0
only).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Nodes:
    """This job's nodes: how many, which one this process runs on, where ranks meet."""

    count: int = 1
    rank: int = 0
    head: str = ""  # host of node 0 (rendezvous); empty on one node
    port: int = 0


def nodes_from_env(env=os.environ) -> Nodes:
    """SLURM's view of the allocation. MASTER_ADDR / MASTER_PORT, when set, win (a user's sbatch
    may pick them); otherwise the first host of SLURM_JOB_NODELIST and a port derived from the job
    id, so every node computes the same endpoint without talking to the others."""
    count = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    if count == 1:
        return Nodes()
    try:
        rank = int(env["SLURM_NODEID"])
        head = env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"])
        port = int(env.get("MASTER_PORT") or rendezvous_port(env["SLURM_JOB_ID"]))
    except KeyError as e:
        raise RunFailed(
            f"a {count}-node job without {e.args[0]} in its environment: start it with srun"
        ) from None
    return Nodes(count=count, rank=rank, head=head, port=port)


def first_host(nodelist: str) -> str:
    """node[1-2],gpu7 -> node1 (scontrol expands SLURM's compressed host lists)."""
    if not any(c in nodelist for c in "[],"):
        return nodelist
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as e:
        raise RunFailed(
            f"cannot expand SLURM_JOB_NODELIST={nodelist!r} with scontrol ({e}); "
            "set MASTER_ADDR to the first node's host"
        ) from None
    if not out:
        raise RunFailed(
            f"scontrol found no host in SLURM_JOB_NODELIST={nodelist!r}; set MASTER_ADDR"
        )
    return out[0]


def rendezvous_port(job_id: str) -> int:
    """20000..32767: below Linux's ephemeral range, so no outgoing connection holds it."""
    return 20000 + zlib.crc32(job_id.encode()) % 12768


def run(run_dir: str, launcher: dict, nodes: Nodes | None = None) -> dict:
    rd = RunDir(run_dir)
    if rd.is_finished():
        return json.loads(rd.result.read_text())
    if not rd.config.is_file():
        raise RunFailed(f"{rd.config} is missing (the sweep writes it at submission)")
    nodes = nodes or nodes_from_env()
    kind, nproc = launcher.get("kind", "python"), int(launcher.get("nproc", 1))
    if nodes.count > 1 and kind == "python":
        raise RunFailed(
            f"launcher python runs one process; a {nodes.count}-node job needs torchrun or"
            " deepspeed"
        )
    if nodes.rank == 0:  # node 0 alone touches the run directory before the ranks meet
        with open(rd.path / "attempts.jsonl", "a") as f:
            f.write(
                json.dumps(
                    {
                        "job_id": job_id_from_env(),
                        "start_step": checkpoint_step(rd),
                        "time": time.time(),
                        "host": socket.gethostname(),
                        "nodes": nodes.count,
                        "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
                    }
                )
                + "\n"
            )
        rd.recover_checkpoint()
    if kind == "python":
        train(str(rd.config))
    else:
        cmd = launch_command(kind, nproc, str(rd.config), nodes)
        print("launching: " + " ".join(cmd), flush=True)
        code = subprocess.run(
            cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        ).returncode
        if code != 0:
            raise RunFailed(
                f"{kind} exited with status {code} for {rd.path} (node {nodes.rank} of"
                f" {nodes.count})"
            )
    if (
        nodes.rank != 0
    ):  # rank 0 (on node 0) writes result.json, perhaps after this node's ranks exit
        return {"node": nodes.rank, "output_dir": str(rd.path)}
    if not rd.is_finished():
        raise RunFailed(f"training ended without {rd.result}")
    return json.loads(rd.result.read_text())


def launch_command(kind: str, nproc: int, config: str, nodes: Nodes = Nodes()) -> list[str]:
    """Ranks on this node: one node rendezvous on a free local port; several nodes meet on node 0's
    host through torchrun's static rendezvous (DeepSpeed's own launcher needs ssh / pdsh across
    nodes, so multi-node DeepSpeed ranks start under torchrun too and read the same environment)."""
    module = ["-m", "beft.sweep.worker", config]
    if nodes.count > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            str(nodes.count),
            "--node_rank",
            str(nodes.rank),
            "--master_addr",
            nodes.head,
            "--master_port",
            str(nodes.port),
            "--nproc_per_node",
            str(nproc),
            *module,
        ]
    if kind == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(nproc),
            *module,
        ]
    if kind == "deepspeed":
        exe = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or shutil.which(
            "deepspeed"
        )
        if exe is None:
            raise RunFailed("launcher deepspeed: the deepspeed command is not installed")
        return [
            exe,
            "--num_gpus",
            str(nproc),
            "--master_port",
            str(_free_port()),
            "--module",
            "beft.sweep.worker",
            config,
        ]
    raise RunFailed(f"unknown launcher {kind!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(config: str) -> dict | None:
    from beft.config import load_config
    from beft.train import Trainer

    return Trainer(load_config(config, resume=True, overwrite=False)).run()


if __name__ == "__main__":  # one rank under torchrun / deepspeed
    args = [
        a
        for a in sys.argv[1:]
        if not a.startswith("--local_rank") and not a.startswith("--local-rank")
    ]
    train(args[0])
