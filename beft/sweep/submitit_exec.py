"""submitit: the only module that imports it. Executors with an explicit cluster (never
AutoExecutor's guess), job arrays, job states from sacct, and the submitted callable.

SweepJob is what runs on the node. Preemption or the time limit sends SIGUSR2; submitit then calls
checkpoint(), which re-submits the same run. The run always trains with resume=true, so the
requeued job continues from checkpoints/last (written atomically by the training loop), and a
run that already holds result.json returns it without training: one result per run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import submitit

from beft.sweep import worker

CLUSTERS = ("slurm", "local", "debug")


class SweepJob:
    """The submitted callable: one run directory (holding config.yaml) and its launcher."""

    def __init__(self, run_dir: str, launcher: dict):
        self.run_dir = str(run_dir)
        self.launcher = dict(launcher)

    def __call__(self) -> dict:
        return worker.run(self.run_dir, self.launcher)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        # The loop's own checkpoint (checkpoints/last) is the state; resume=true picks it up.
        return submitit.helpers.DelayedSubmission(type(self)(self.run_dir, self.launcher))

    def __repr__(self) -> str:
        return f"SweepJob({Path(self.run_dir).name})"


def slurm_parameters(res, name: str) -> dict:
    """Spec resources -> submitit SlurmExecutor parameters (sbatch names)."""
    params = {
        "job_name": name,
        "time": res.time_min,
        "nodes": res.nodes,
        "ntasks_per_node": 1,
        "cpus_per_task": res.cpus_per_task,
        "mem": f"{int(res.mem_gb * 1024)}M",
        "array_parallelism": res.array_parallelism,
        "signal_delay_s": res.signal_delay_s,
    }
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    for key in ("partition", "account", "qos"):
        if getattr(res, key):
            params[key] = getattr(res, key)
    return params


def make_executor(cluster: str, folder: Path, res, name: str):
    if cluster == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=10)
        ex.update_parameters(**slurm_parameters(res, name))
        return ex
    if cluster == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=10)
        ex.update_parameters(timeout_min=res.time_min)
        return ex
    if cluster == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise ValueError(f"executor {cluster!r} is not one of {', '.join(CLUSTERS)}")


def sbatch_preview(res, name: str, folder: Path, n: int) -> str:
    """The #SBATCH lines submitit would write for an array of n runs (dry run)."""
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(
        command="python -u -m submitit.core._submit " + str(folder),
        folder=folder,
        map_count=n,
        **slurm_parameters(res, name),
    )
    return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH"))


def submit_array(executor, calls: list[SweepJob]) -> list:
    """One SLURM job array (a single job for one call); returns submitit jobs in order."""
    if len(calls) == 1:
        return [executor.submit(calls[0])]
    with executor.batch():
        jobs = [executor.submit(c) for c in calls]
    return jobs


def job_paths(folder: Path, job_id: str) -> dict:
    paths = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0)
    return {"stdout": str(paths.stdout), "stderr": str(paths.stderr)}


def slurm_states(folder: Path, job_ids: list[str]) -> dict[str, str]:
    """job id -> SLURM state (sacct, one call for all arrays); 'UNKNOWN' where sacct has no
    record."""
    if not job_ids:
        return {}
    watcher = submitit.SlurmJob.watcher
    for jid in job_ids:
        watcher.register_job(jid)
    watcher.update()
    return {jid: watcher.get_state(jid, mode="cache").split()[0] for jid in job_ids}


# the line a Python exception (or beft's one-line "error: ...") ends a failed job's stderr with
_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failed|Stopped)\b|error:)"
)
LOG_TAIL = 64 * 1024


def job_error(folder: Path, job_id: str) -> str | None:
    """The error a failed job reported: the last exception line of its stderr log (None if none).

    Only text is read. submitit also leaves the exception in <job>_result.pkl, but the sweep root
    may be writable by others, and unpickling a file planted there would run their code as
    whoever runs `status`: the pickle is never opened."""
    path = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0).stderr
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    hits = [ln.strip() for ln in re.split(r"[\r\n]", tail) if _ERROR_LINE.match(ln.strip())]
    return hits[-1] if hits else None


def sinfo_ok(timeout: float = 10) -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
