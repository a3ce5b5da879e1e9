"""The per-sweep jobs file (<root>/jobs.json, written atomically under a lock) and run states.

A run's state: done if its result.json exists (whatever the scheduler says); otherwise from the
job recorded for it: SLURM jobs by their sacct state, local/debug jobs by the state recorded when
they ended; unsubmitted if no job was ever recorded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path

from beft.outputs import atomic_write_json

JOBS_FILE = "jobs.json"
STATES = ("unsubmitted", "pending", "running", "done", "failed")
_PENDING = {
    "PENDING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
    "UNKNOWN",
    "READY",
}
_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"}


def jobs_path(root: Path) -> Path:
    return Path(root) / JOBS_FILE


def read_jobs(root: Path) -> dict:
    p = jobs_path(root)
    if not p.is_file():
        return {"runs": {}}
    return json.loads(p.read_text())


@contextlib.contextmanager
def locked_jobs(root: Path):
    """Read-modify-write of the jobs file; one submitter at a time."""
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / ".jobs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_jobs(root)
        yield data
        atomic_write_json(jobs_path(root), data)


def record(
    data: dict,
    run_id: str,
    executor: str,
    job_id: str,
    folder: Path,
    logs: dict,
    state: str | None = None,
) -> None:
    old = data["runs"].get(run_id, {})
    data["runs"][run_id] = {
        "executor": executor,
        "job_id": str(job_id),
        "folder": str(folder),
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "submissions": old.get("submissions", 0) + 1,
        "state": state,
        **logs,
        "previous": (old.get("previous", []) + [old["job_id"]])[-5:] if old else [],
    }


@dataclass
class RunState:
    run_id: str
    state: str  # one of STATES
    job_id: str | None = None
    scheduler_state: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    error: str | None = None


def classify(scheduler_state: str | None, finished: bool) -> str:
    if finished:
        return "done"
    if scheduler_state is None:
        return "unsubmitted"
    s = scheduler_state.upper().split()[0]
    if s in _PENDING:
        return "pending"
    if s in _RUNNING:
        return "running"
    return "failed"  # COMPLETED without result.json, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, ...


def run_states(spec, data: dict | None = None) -> list[RunState]:
    from beft.sweep import submitit_exec as sb

    data = data if data is not None else read_jobs(spec.root)
    recs = data["runs"]
    slurm_ids = [r["job_id"] for rid, r in recs.items() if r["executor"] == "slurm"]
    states = sb.slurm_states(spec.root / "_submitit", slurm_ids) if slurm_ids else {}
    out = []
    for run in spec.runs:
        rec = recs.get(run.run_id)
        finished = (run.output_dir / "result.json").is_file()
        if rec is None:
            out.append(RunState(run.run_id, classify(None, finished)))
            continue
        sched = (
            states.get(rec["job_id"], "UNKNOWN")
            if rec["executor"] == "slurm"
            else (rec.get("state") or "UNKNOWN")
        )
        st = RunState(
            run.run_id,
            classify(sched, finished),
            rec["job_id"],
            sched,
            rec.get("stdout"),
            rec.get("stderr"),
        )
        if st.state == "failed":
            st.error = sb.job_error(Path(rec["folder"]), rec["job_id"])
        out.append(st)
    return out


def counts(states: list[RunState]) -> dict[str, int]:
    c = dict.fromkeys(STATES, 0)
    for s in states:
        c[s.state] += 1
    return c
