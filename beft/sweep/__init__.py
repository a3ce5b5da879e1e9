"""SLURM sweeps: a YAML grid of runs -> stable run ids -> submission (submitit) -> status -> tables.

    python slurm/sweep.py submit slurm/sweeps/table5.yaml --executor slurm --dry-run
    python slurm/sweep.py status slurm/sweeps/table5.yaml
    python slurm/sweep.py collect slurm/sweeps/table5.yaml --out tables/table5

spec.py     parse + validate a spec, expand it into runs, run ids
jobs.py     the per-sweep jobs file (atomic) and run states (status)
submit.py   what to (re)submit; grouping into job arrays; dry run
worker.py   what a job runs: one training run (in-process, or torchrun/deepspeed inside the allocation)
collect.py  result.json -> Markdown / CSV / LaTeX tables, t-tests, PNG figures
submitit_exec.py  the submitit adapter: executors, job arrays, sacct states, the submitted callable
Only beft/sweep/submitit_exec.py imports submitit.
"""
