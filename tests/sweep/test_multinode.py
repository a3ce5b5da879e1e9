"""Multi-node sweeps (slurm.nodes > 1): one launcher per node, ranks meet on node 0's host.

Two launcher processes with --nnodes 2 on this host stand in for two nodes (2 nodes x 1 rank must
train what one process trains), and a real 2-node SLURM sweep runs when the local cluster has
two nodes (`SLURM_NODES=2 ../shared/tools/slurm-local/start.sh`, as .ci/run starts it)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from beft.sweep import worker
from beft.sweep.spec import SpecError, load_spec
from paths import DATA_DIR, ROOT
from ports import free_port
from sweep_helpers import jobs, sweep, tiny_spec, wait_for
from train_helpers import assert_runs_agree, base_args, result


# ------------------------------------------------------------------ where the ranks meet
def test_one_node_needs_no_rendezvous_host():
    assert worker.nodes_from_env({}) == worker.Nodes()
    assert (
        worker.nodes_from_env({"SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0"}) == worker.Nodes()
    )


def test_every_node_computes_the_same_endpoint():
    env = {"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu7", "SLURM_JOB_ID": "4242"}
    a = worker.nodes_from_env({**env, "SLURM_NODEID": "0"})
    b = worker.nodes_from_env({**env, "SLURM_NODEID": "1"})
    assert (a.count, a.rank, b.rank) == (2, 0, 1)
    assert a.head == b.head == "gpu7" and a.port == b.port
    assert 20000 <= a.port < 32768
    assert (
        worker.nodes_from_env({**env, "SLURM_JOB_ID": "4243", "SLURM_NODEID": "0"}).port != a.port
    )
    mine = worker.nodes_from_env(
        {**env, "SLURM_NODEID": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}
    )
    assert (mine.head, mine.port) == ("10.0.0.1", 29400)


def test_a_node_outside_srun_is_a_clear_error():
    with pytest.raises(worker.RunFailed, match="without SLURM_NODEID.*srun"):
        worker.nodes_from_env(
            {"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "a,b", "SLURM_JOB_ID": "1"}
        )


def test_multi_node_command_is_torchrun_with_a_static_rendezvous():
    nodes = worker.Nodes(count=2, rank=1, head="node1", port=23456)
    for kind in ("torchrun", "deepspeed"):
        cmd = worker.launch_command(kind, 4, "cfg.yaml", nodes)
        assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
        flags = dict(zip(cmd[3:13:2], cmd[4:14:2]))
        assert flags == {
            "--nnodes": "2",
            "--node_rank": "1",
            "--master_addr": "node1",
            "--master_port": "23456",
            "--nproc_per_node": "4",
        }
        assert cmd[-3:] == ["-m", "beft.sweep.worker", "cfg.yaml"]
    assert "--standalone" in worker.launch_command("torchrun", 2, "cfg.yaml")


# ------------------------------------------------------------------ spec errors
def _spec(tmp_path, launcher, nodes=2):
    path = tiny_spec(tmp_path, "model-dir", tasks=("sst2",), targets=("v",), seeds=(0,))
    spec = yaml.safe_load(path.read_text())
    spec["launcher"], spec["slurm"]["nodes"] = launcher, nodes
    path.write_text(yaml.safe_dump(spec))
    return path


def test_one_process_launcher_cannot_span_nodes(tmp_path):
    with pytest.raises(SpecError, match="slurm.nodes=2 needs launcher kind torchrun or deepspeed"):
        load_spec(_spec(tmp_path, {"kind": "python"}))
    assert load_spec(_spec(tmp_path, {"kind": "torchrun", "nproc": 1})).runs[0].resources.nodes == 2


@pytest.mark.parametrize("executor", ["local", "debug"])
def test_multi_node_needs_the_slurm_executor(tmp_path, executor):
    from beft.sweep.submit import submit

    spec = load_spec(_spec(tmp_path, {"kind": "torchrun", "nproc": 1}))
    with pytest.raises(
        SpecError, match=f"executor {executor} runs on this host only: use --executor slurm"
    ):
        submit(spec, executor)
    assert not spec.root.exists()  # nothing written


# ------------------------------------------------------------------ 2 nodes x 1 rank = 1 process
def _config(tmp_path, model, name, backend):
    from beft.config import load_config

    out = tmp_path / name
    fixed = {"backend": backend}
    if backend == "deepspeed":
        fixed["deepspeed_config"] = str(ROOT / "ds_configs" / "zero2.json")
    cfg = load_config(None, base_args(model, out, data_dir=DATA_DIR), **fixed).to_dict()
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def _node_processes(run_dir, kind, port):
    """Both 'nodes' of a 2-node job: the worker as submitit starts it on each, from SLURM's env."""
    env = {
        **os.environ,
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "127.0.0.1",
        "SLURM_JOB_ID": "7",
        "MASTER_PORT": str(port),
        "BEFT_DATA_DIR": str(DATA_DIR),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    # each node writes what worker.run returned to a file (stdout also carries the ranks' output)
    code = (
        "import sys, json, pathlib; from beft.sweep import worker;"
        " pathlib.Path(sys.argv[2]).write_text(json.dumps(worker.run(sys.argv[1], {'kind':"
        f" {kind!r}, 'nproc': 1}})))"
    )
    return [
        subprocess.Popen(
            [sys.executable, "-c", code, str(run_dir), str(run_dir.parent / f"node{r}.json")],
            env={**env, "SLURM_NODEID": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        for r in (0, 1)
    ]


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize("kind,backend", [("torchrun", "fsdp"), ("deepspeed", "deepspeed")])
def test_two_nodes_train_what_one_process_trains(kind, backend, reference, tiny_dirs, tmp_path):
    """2 nodes x 1 rank (the same comparison tests/train/test_distributed.py makes for 1 node x
    2)."""
    run_dir = _config(tmp_path, tiny_dirs["bert"], "two_nodes", backend)
    procs = _node_processes(run_dir, kind, free_port())
    errs = [pr.communicate(timeout=900)[1] for pr in procs]
    for pr, err in zip(procs, errs):
        assert pr.returncode == 0, err[-3000:]
    assert json.loads((tmp_path / "node1.json").read_text()) == {
        "node": 1,
        "output_dir": str(run_dir),
    }
    res = result(run_dir)
    assert res["world_size"] == 2 and res["backend"] == backend
    attempts = (run_dir / "attempts.jsonl").read_text().splitlines()
    assert (
        len(attempts) == 1 and json.loads(attempts[0])["nodes"] == 2
    )  # node 0 alone records the start
    assert_runs_agree(run_dir, reference, what=f"2 nodes x 1 rank ({kind}) vs 1 process")


# ------------------------------------------------------------------ a real 2-node SLURM sweep
def _slurm_nodes() -> int:
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len(set(out.stdout.split())) if out.returncode == 0 else 0


@pytest.mark.slow
@pytest.mark.dist
def test_a_two_node_sweep_on_slurm(tiny_bert, tmp_path):
    if _slurm_nodes() < 2:
        pytest.skip(
            "needs a 2-node SLURM cluster: SLURM_NODES=2 ../shared/tools/slurm-local/start.sh"
        )
    path = tiny_spec(
        tmp_path,
        tiny_bert,
        name="nodes2",
        tasks=("sst2",),
        targets=("v",),
        seeds=(0,),
        **{"checkpoint.every_steps": 0},
    )
    spec = yaml.safe_load(path.read_text())
    spec["launcher"], spec["slurm"]["nodes"] = {"kind": "torchrun", "nproc": 1}, 2
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    loaded = load_spec(path)
    r = sweep("submit", path, "--executor", "slurm")
    assert r.returncode == 0, r.stderr
    from beft.sweep import jobs as J

    wait_for(
        lambda: J.counts(J.run_states(loaded))["done"] == 1
        or J.counts(J.run_states(loaded))["failed"],
        600,
        "the 2-node run",
        every=2,
    )
    run_dir = loaded.runs[0].output_dir
    assert (run_dir / "result.json").is_file(), (run_dir / "attempts.jsonl").read_text()
    res = json.loads((run_dir / "result.json").read_text())
    assert res["world_size"] == 2 and res["backend"] == "fsdp"
    job_id = next(iter(jobs(loaded.root).values()))["job_id"]
    nodelist = subprocess.run(
        ["sacct", "-n", "-X", "-j", job_id, "-o", "NodeList%40"], capture_output=True, text=True
    ).stdout.split()
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist[0]], capture_output=True, text=True
    ).stdout.split()
    assert len(hosts) == 2, nodelist
