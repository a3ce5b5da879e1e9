"""Submission: which runs to (re)submit, one job array per (launcher, resources) group.

Finished runs (result.json) are skipped; queued or running ones are left alone; failed, cancelled
and never-submitted runs are submitted. Each run's directory gets its config.yaml before its job
is submitted, and the job ids are recorded in the jobs file at once (atomic write, under a lock).
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from typing import Callable

import yaml

from beft.outputs import atomic_write_text
from beft.sweep import jobs as J
from beft.sweep.spec import Run, Spec, SpecError

SHOWN_KEYS = ("lr", "epochs", "batch_size", "data.max_length", "data.train_objective", "precision")


def plan(spec: Spec, states: list[J.RunState]) -> tuple[list[Run], dict[str, int]]:
    by_id = {s.run_id: s for s in states}
    todo, skipped = [], defaultdict(int)
    for run in spec.runs:
        st = by_id[run.run_id].state
        if st in ("unsubmitted", "failed"):
            todo.append(run)
        else:
            skipped[st] += 1
    return todo, dict(skipped)


def groups(runs: list[Run]) -> dict[tuple, list[Run]]:
    out: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        out[(r.launcher, r.resources)].append(r)
    return dict(out)


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def describe(run: Run) -> str:
    c = run.config
    shown = " ".join(f"{k.split('.')[-1]}={_get(c, k)}" for k in SHOWN_KEYS)
    lau = run.launcher.kind + (f"x{run.launcher.nproc}" if run.launcher.nproc > 1 else "")
    return (
        f"{run.run_id}  model={c['model']} task={c['task']} target={run.target}"
        f" regime={c['regime']} seed={c['seed']} {shown} launcher={lau}"
    )


def write_config(run: Run) -> None:
    run.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.output_dir / "config.yaml", yaml.safe_dump(run.config, sort_keys=False))


def submit(
    spec: Spec, executor: str, dry_run: bool = False, out: Callable[[str], None] = print
) -> dict:
    """Returns {'submitted': [run ids], 'skipped': {state: n}, 'failed': [run ids]
    (local/debug)}."""
    from beft.sweep import submitit_exec as sb

    states = (
        J.run_states(spec)
        if not dry_run or J.jobs_path(spec.root).is_file()
        else [
            J.RunState(
                r.run_id, "done" if (r.output_dir / "result.json").is_file() else "unsubmitted"
            )
            for r in spec.runs
        ]
    )
    todo, skipped = plan(spec, states)
    wide = [r for r in todo if r.resources.nodes > 1]
    if wide and executor != "slurm":
        raise SpecError(
            f"{spec.path}: run {wide[0].run_id} asks for slurm.nodes={wide[0].resources.nodes}; "
            f"executor {executor} runs on this host only: use --executor slurm"
        )
    folder = spec.root / "_submitit"
    name = f"beft-{spec.name}"
    out(
        f"sweep {spec.name}: {len(spec.runs)} runs, {len(todo)} to submit"
        + "".join(f", {n} {s}" for s, n in sorted(skipped.items()))
        + f" (root {spec.root})"
    )
    if dry_run:
        for (lau, res), runs in groups(todo).items():
            out(
                f"\n# {len(runs)} runs, launcher {lau.kind} nproc={lau.nproc}"
                + (f" ds_config={lau.ds_config}" if lau.ds_config else "")
            )
            if executor == "slurm":
                out(sb.sbatch_preview(res, name, folder, len(runs)))
            else:
                out(f"# executor {executor}, parallelism {spec.local_parallelism}")
            for r in runs:
                out(describe(r))
        return {
            "submitted": [],
            "skipped": skipped,
            "failed": [],
            "planned": [r.run_id for r in todo],
        }

    for r in todo:
        write_config(r)
    done_ids, failed = [], []
    for (lau, res), runs in groups(todo).items():
        calls = [sb.SweepJob(str(r.output_dir), dataclasses.asdict(lau)) for r in runs]
        if executor == "slurm":
            ex = sb.make_executor("slurm", folder, res, name)
            submitted = sb.submit_array(ex, calls)
            with J.locked_jobs(spec.root) as data:
                for r, job in zip(runs, submitted):
                    J.record(
                        data,
                        r.run_id,
                        "slurm",
                        job.job_id,
                        folder,
                        sb.job_paths(folder, job.job_id),
                    )
            out(
                f"submitted {len(runs)} runs as SLURM job {submitted[0].job_id.split('_')[0]}"
                f" (at most {res.array_parallelism} at once)"
            )
        else:
            failed += _run_here(spec, executor, res, name, folder, runs, calls, out)
        done_ids += [r.run_id for r in runs]
    return {"submitted": done_ids, "skipped": skipped, "failed": failed}


def _run_here(spec, executor, res, name, folder, runs, calls, out) -> list[str]:
    """local: submitit subprocesses, at most local.parallelism at once, waited for; debug: in
    this process, one after another. The final state of each job is recorded."""
    from beft.sweep import submitit_exec as sb

    ex = sb.make_executor(executor, folder, res, name)
    limit = spec.local_parallelism if executor == "local" else 1
    queue, active, failed = list(zip(runs, calls)), [], []

    def finish(run, job):
        try:
            job.result()
            state = "COMPLETED"
        except Exception as e:  # the job's own error; the run shows as failed in status
            state = "FAILED"
            failed.append(run.run_id)
            out(
                f"failed: {run.run_id}:"
                f" {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
            )
        with J.locked_jobs(spec.root) as data:
            J.record(
                data,
                run.run_id,
                executor,
                job.job_id,
                folder,
                sb.job_paths(folder, job.job_id),
                state=state,
            )
        if state == "COMPLETED":
            out(f"done: {run.run_id}")

    while queue or active:
        while queue and len(active) < limit:
            run, call = queue.pop(0)
            job = ex.submit(call)
            with J.locked_jobs(spec.root) as data:
                J.record(
                    data,
                    run.run_id,
                    executor,
                    job.job_id,
                    folder,
                    sb.job_paths(folder, job.job_id),
                    state="RUNNING",
                )
            active.append((run, job))
        for item in [a for a in active if executor == "debug" or a[1].done()]:
            active.remove(item)
            finish(*item)
        if active:
            time.sleep(0.5)
    return failed


def status(spec: Spec, out: Callable[[str], None] = print) -> list[J.RunState]:
    states = J.run_states(spec)
    c = J.counts(states)
    out(
        f"sweep {spec.name}: {len(states)} runs: "
        + " ".join(f"{k}={v}" for k, v in c.items())
        + f" (root {spec.root})"
    )
    for s in states:
        if s.state == "failed":
            out(
                f"failed  {s.run_id}  job {s.job_id} ({s.scheduler_state})"
                + (f": {s.error}" if s.error else "")
                + f"\n        log {s.stderr}\n        out {s.stdout}"
            )
    return states
