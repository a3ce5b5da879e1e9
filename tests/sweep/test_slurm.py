"""Tiny sweeps on the real local SLURM cluster (../shared/tools/slurm-local/start.sh), and the
same sweep with the local executor where SLURM is absent."""

import csv
import io
import json
import os
import shutil
import subprocess

import pytest

from beft.sweep import jobs as J
from beft.sweep.spec import load_spec
from sweep_helpers import jobs, squeue_ids, sweep, tiny_spec, wait_for


def finished(spec, n):
    return lambda: J.counts(J.run_states(spec))["done"] == n


def assert_table_matches_results(spec, out):
    r = sweep("collect", spec.path, "--out", out)
    assert r.returncode == 0, r.stderr
    rows = {
        (t["task"], t["target"]): t
        for t in csv.DictReader(io.StringIO((out / f"{spec.name}.csv").read_text()))
    }
    assert len(rows) == 4
    for task in ("sst2", "rte"):
        for target in ("q", "v"):
            vals = []
            for run in spec.runs:
                if (run.config["task"], run.target) == (task, target):
                    res = json.loads((run.output_dir / "result.json").read_text())
                    vals.append(res["final"][res["main_metric"]] * 100)
                    assert (res["task"], res["bias"], res["seed"]) == (
                        task,
                        target,
                        run.config["seed"],
                    )
            row = rows[(task, target)]
            assert row["n"] == "2" and float(row["mean"]) == pytest.approx(sum(vals) / 2, abs=1e-9)
    assert (out / f"{spec.name}.md").is_file() and (out / f"{spec.name}.tex").is_file()


def test_tiny_sweep_on_slurm(slurm, tiny_bert, tmp_path):
    path = tiny_spec(tmp_path, tiny_bert)
    spec = load_spec(path)
    r = sweep("submit", path, "--executor", "slurm")
    assert r.returncode == 0, r.stderr
    assert "8 to submit" in r.stdout and "at most 2 at once" in r.stdout
    recs = jobs(spec.root)
    array = {rec["job_id"].split("_")[0] for rec in recs.values()}
    assert len(recs) == 8 and len(array) == 1  # one job array
    wait_for(finished(spec, 8), 400, "8 runs done", every=2)
    for run in spec.runs:  # each run wrote only its own dir
        assert json.loads((run.output_dir / "result.json").read_text())["status"] == "finished"
        assert (run.output_dir / "config.yaml").is_file()
    assert_table_matches_results(spec, tmp_path / "tables")
    st = sweep("status", path)
    assert st.returncode == 0 and "done=8 failed=0" in st.stdout
    again = sweep("submit", path, "--executor", "slurm")
    assert again.returncode == 0 and "0 to submit, 8 done" in again.stdout
    assert jobs(spec.root) == recs  # nothing re-submitted


def test_requeue_resumes_from_checkpoint(slurm, tiny_bert, tmp_path):
    # 8 steps/epoch x 50 epochs: long enough to be requeued mid-run (checkpoint every step)
    path = tiny_spec(
        tmp_path,
        tiny_bert,
        name="rq",
        tasks=("sst2",),
        targets=("v",),
        seeds=(0,),
        epochs=50,
        **{"data.n_train": 64},
    )
    spec = load_spec(path)
    run_dir = spec.runs[0].output_dir
    assert sweep("submit", path, "--executor", "slurm").returncode == 0
    jid = jobs(spec.root)[spec.runs[0].run_id]["job_id"]

    def step():
        try:
            return json.loads((run_dir / "checkpoints" / "last" / "meta.json").read_text())["step"]
        except (OSError, ValueError):
            return 0

    wait_for(lambda: step() >= 3, 180, "a checkpoint", every=0.1)
    subprocess.run(["scontrol", "requeue", jid], check=True)
    # SLURM holds a requeued job back (BeginTime, ~2 min); let it start now, as a free cluster would
    wait_for(
        lambda: "PENDING" in subprocess.run(
            ["squeue", "-h", "-j", jid, "-o", "%T"], capture_output=True, text=True
        ).stdout,
        60,
        "the job pending again",
        every=0.5,
    )
    subprocess.run(["scontrol", "update", f"JobId={jid}", "StartTime=now"], check=True)
    wait_for(
        lambda: (run_dir / "result.json").is_file() and jid not in squeue_ids(),
        300,
        "the requeued run",
    )

    attempts = [json.loads(x) for x in (run_dir / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 2 and attempts[0]["start_step"] == 0
    assert (
        0 < attempts[1]["start_step"] < 400 and attempts[1]["restart"] == 1
    )  # resumed, not restarted
    # SIGTERM stopped the first attempt at a step boundary with a checkpoint at that very step
    log = "".join(f.read_text() for f in (spec.root / "_submitit").glob(f"{jid}_*log.err"))
    assert f"stopped by SIGTERM after step {attempts[1]['start_step']};" in log
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == 400
    steps = [
        json.loads(x)["step"]
        for x in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(x)
    ]
    assert steps == list(range(1, 401))  # one record per step: one history
    again = sweep("submit", path, "--executor", "slurm")
    assert again.returncode == 0 and "0 to submit" in again.stdout
    assert jobs(spec.root)[spec.runs[0].run_id]["submissions"] == 1


def test_failed_run_shows_log_and_is_retried(slurm, tiny_bert, tmp_path):
    model = tmp_path / "model_not_there_yet"
    path = tiny_spec(tmp_path, str(model), name="fail", tasks=("sst2",), targets=("v",), seeds=(0,))
    spec = load_spec(path)
    assert sweep("submit", path, "--executor", "slurm").returncode == 0
    wait_for(lambda: J.counts(J.run_states(spec))["failed"] == 1, 180, "the run to fail", every=1)
    st = sweep("status", path)
    assert st.returncode == 1 and "failed=1" in st.stdout
    rec = jobs(spec.root)[spec.runs[0].run_id]
    assert f"log {rec['stderr']}" in st.stdout and "does not exist" in st.stdout
    assert "model_not_there_yet" in open(rec["stderr"]).read()
    shutil.copytree(tiny_bert, model)  # fix the cause, submit again
    r = sweep("submit", path, "--executor", "slurm")
    assert r.returncode == 0 and "1 to submit" in r.stdout
    new = jobs(spec.root)[spec.runs[0].run_id]
    assert (
        new["job_id"] != rec["job_id"]
        and new["previous"] == [rec["job_id"]]
        and new["submissions"] == 2
    )
    wait_for(finished(spec, 1), 180, "the retried run", every=1)


def test_local_executor_without_slurm(tiny_bert, tmp_path):
    fake = tmp_path / "no_slurm_bin"  # every SLURM command fails here
    fake.mkdir()
    for cmd in ("sinfo", "sbatch", "sacct", "squeue", "srun", "scontrol"):
        (fake / cmd).write_text("#!/bin/sh\necho no slurm >&2\nexit 1\n")
        (fake / cmd).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    path = tiny_spec(tmp_path, tiny_bert)
    spec = load_spec(path)
    for args, expect in (
        (["submit", path, "--executor", "slurm"], 2),
        (["submit", path, "--executor", "local"], 0),
    ):
        r = subprocess.run(sweep_cmd(args), capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == expect, r.stdout + r.stderr
    assert (
        "sinfo does not answer" in subprocess.run(
            sweep_cmd(["submit", path, "--executor", "slurm"]),
            capture_output=True,
            text=True,
            env=env,
        ).stderr
    )
    assert J.counts(J.run_states(spec))["done"] == 8
    assert {rec["executor"] for rec in jobs(spec.root).values()} == {"local"}
    assert_table_matches_results(spec, tmp_path / "tables")
    r = subprocess.run(
        sweep_cmd(["submit", path, "--executor", "local"]), capture_output=True, text=True, env=env
    )
    assert r.returncode == 0 and "0 to submit, 8 done" in r.stdout


def sweep_cmd(args):
    from sweep_helpers import SWEEP

    return SWEEP + [str(a) for a in args]
