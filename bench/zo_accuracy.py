#!/usr/bin/env python
"""ZO b_v against first-order b_v at equal training time: SST-2, low regime (1,000 training
examples), scored on the 872-example dev set, all-MiniLM-L6-v2, seeds 1-3.

    python bench/zo_accuracy.py [--seeds 1 2 3] [--jobs 2] [--zo-lr 3e-3] [--tune 1e-3 1e-2]
    [--probe]
                                [--perturb batch|example] [--subspace 0] [--head-lr 0] [--n 1]
                                [--difference central|forward] [--out bench_runs/zo_accuracy]

Every run goes through the normal launcher (launch/train.py, one torch thread per process,
`--jobs` processes at once, batch 16, data.max_length=64, log_every=1):
1. first-order b_v (AdamW, lr 3e-2 as in bench/finding.py, 2 epochs = 124 steps) for every seed,
   and ZO b_v on seed 1 for the same number of steps (equal steps; it also gives the ZO step time);
2. training time of a run = the sum of its logged per-step times (+ the head probe's time with
   --probe); a step that absorbed an evaluation (the first of each later epoch) counts as the run's
   median step. Equal time: ZO gets N = round((mean first-order training time - probe time) /
   median ZO step time) steps;
3. `--tune LR ...`: ZO on seed 1 with N steps for each lr; the best final dev accuracy picks the
   lr for all seeds (this tunes on the reported dev set, and the table says so);
4. ZO b_v for every seed with N steps (optim.kind=zo, zo.n=1, zo.eps=1e-3, zo.update=adam; the
   new classifier head trains first-order: zo.head=first_order, the loop's default, with lr
   --head-lr, 0: the ZO lr; zo.perturb=--perturb: one z per step, or one per example;
   zo.subspace=--subspace: z along the k top right-singular directions of each layer's W_o;
   zo.n=--n draws per step, zo.difference=--difference: central, 2 passes per draw, or forward,
   1 per draw + 1 shared unperturbed pass).
Finished runs are reused (a result.json in the run folder), never overwritten.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = {
    "model": "minilm",
    "task": "sst2",
    "regime": "low",
    "bias": "v",
    "batch_size": 16,
    "data.max_length": 64,
    "data.n_eval": 872,
    "threads": 1,
    "log_every": 1,
}
FIRST_ORDER = {"lr": 3e-2, "epochs": 2}
ZO = {
    "optim.kind": "zo",
    "zo.n": 1,
    "zo.eps": 1e-3,
    "zo.update": "adam",
    "zo.head": "first_order",
    "epochs": 1000,
}  # max_steps decides; evaluations still run at every epoch end


def run_dir(root: Path, name: str, kv: dict) -> Path:
    return root / f"{name}-{hashlib.sha1(json.dumps(kv, sort_keys=True).encode()).hexdigest()[:10]}"


def execute(root: Path, name: str, kv: dict) -> dict:
    kv = {**COMMON, **kv}
    out = run_dir(root, name, kv)
    if not (out / "result.json").is_file():
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        env.setdefault("BEFT_DATA_DIR", str(ROOT.parent / "shared" / "data"))
        t = time.perf_counter()
        p = subprocess.run(
            [
                sys.executable,
                str(ROOT / "launch" / "train.py"),
                *[f"{k}={v}" for k, v in kv.items()],
                f"output_dir={out}",
                "overwrite=true",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if p.returncode != 0:
            raise RuntimeError(f"{out.name} failed:\n{p.stderr[-3000:]}")
        print(f"  done {out.name} in {time.perf_counter() - t:.0f}s", flush=True)
    res = json.loads((out / "result.json").read_text())
    steps = step_times(out / "metrics.jsonl", kv["batch_size"], res["n_train"] // kv["batch_size"])
    return {
        "name": name,
        "kv": kv,
        "dir": str(out),
        "acc": res["final"]["accuracy"],
        "best": res["best"]["accuracy"],
        "steps": res["steps"],
        "wall_s": res["wall_time_s"],
        "step_s": statistics.median(steps),
        "probe_s": (res.get("probe") or {}).get("seconds", 0.0),
        "train_s": sum(steps) + (res.get("probe") or {}).get("seconds", 0.0),
    }


def step_times(metrics: Path, batch: int, per_epoch: int) -> list[float]:
    """Seconds of every step (log_every=1); those that absorbed an evaluation count as the
    median."""
    recs = [json.loads(x) for x in metrics.read_text().splitlines()]
    recs = [r for r in recs if "examples_per_s" in r]
    times = {r["step"]: batch / r["examples_per_s"] for r in recs}
    if len(times) != max(times):
        raise RuntimeError(f"{metrics}: expected one record per step (log_every=1)")
    med = statistics.median(times.values())
    return [med if (s > 1 and (s - 1) % per_epoch == 0) else t for s, t in sorted(times.items())]


def in_parallel(jobs: int, root: Path, todo: list[tuple[str, dict]]) -> list[dict]:
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda job: execute(root, *job), todo))


def summary(rows: list[dict]) -> tuple[float, float]:
    acc = [100 * r["acc"] for r in rows]
    return statistics.mean(acc), (statistics.stdev(acc) if len(acc) > 1 else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=2, help="processes at once (one torch thread each)")
    ap.add_argument(
        "--zo-lr", type=float, default=3e-3, help="ZO lr (and the head's) without --tune"
    )
    ap.add_argument(
        "--tune", type=float, nargs="*", default=None, help="ZO lrs to try on the first seed"
    )
    ap.add_argument("--fo-epochs", type=int, default=FIRST_ORDER["epochs"])
    ap.add_argument(
        "--probe",
        action="store_true",
        help=(
            "ZO runs fit the head first (zo.probe=true); the "
            "probe's time counts into ZO's training time"
        ),
    )
    ap.add_argument("--perturb", choices=("batch", "example"), default="batch", help="zo.perturb")
    ap.add_argument("--subspace", type=int, default=0, help="zo.subspace (0: every direction)")
    ap.add_argument(
        "--head-lr",
        type=float,
        default=0.0,
        help="zo.head_lr (the head's AdamW and probe; 0: the ZO lr)",
    )
    ap.add_argument("--n", type=int, default=1, help="zo.n (draws per step)")
    ap.add_argument(
        "--difference", choices=("central", "forward"), default="central", help="zo.difference"
    )
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "zo_accuracy"))
    args = ap.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    global ZO
    if args.probe:
        ZO = {**ZO, "zo.probe": "true"}
    if args.perturb != "batch":
        ZO = {**ZO, "zo.perturb": args.perturb}
    if args.head_lr:
        ZO = {**ZO, "zo.head_lr": args.head_lr}
    if args.subspace:
        ZO = {**ZO, "zo.subspace": args.subspace}
    if args.n != 1:
        ZO = {**ZO, "zo.n": args.n}
    if args.difference != "central":
        ZO = {**ZO, "zo.difference": args.difference}
    s1 = args.seeds[0]
    fo_kv = {**FIRST_ORDER, "epochs": args.fo_epochs}
    n_fo = args.fo_epochs * (1000 // COMMON["batch_size"])

    print(
        f"phase 1: first-order b_v ({n_fo} steps) x {len(args.seeds)} seeds + ZO seed {s1} at equal"
        " steps",
        flush=True,
    )
    phase1 = in_parallel(
        args.jobs,
        root,
        [(f"fo-s{s}", {**fo_kv, "seed": s}) for s in args.seeds]
        + [(f"zo-eqsteps-s{s1}", {**ZO, "lr": args.zo_lr, "max_steps": n_fo, "seed": s1})],
    )
    fo, zo_eq = phase1[:-1], phase1[-1]
    fo_train = statistics.mean(r["train_s"] for r in fo)
    n_zo = max(1, round((fo_train - zo_eq["probe_s"]) / zo_eq["step_s"]))
    print(
        f"first-order training time {fo_train:.1f}s (mean), step"
        f" {statistics.mean(r['step_s'] for r in fo):.3f}s; ZO step {zo_eq['step_s']:.3f}s -> ZO"
        f" gets {n_zo} steps",
        flush=True,
    )

    lr, tuned = args.zo_lr, []
    if args.tune:
        print(f"phase 2: ZO lr on seed {s1}: {args.tune}", flush=True)
        tuned = in_parallel(
            args.jobs,
            root,
            [
                (f"zo-s{s1}-lr{x:g}", {**ZO, "lr": x, "max_steps": n_zo, "seed": s1})
                for x in args.tune
            ],
        )
        lr = max(tuned, key=lambda r: r["acc"])["kv"]["lr"]
    print(f"phase 3: ZO b_v, lr {lr:g}, {n_zo} steps, seeds {args.seeds}", flush=True)
    zo = in_parallel(
        args.jobs,
        root,
        [(f"zo-s{s}-lr{lr:g}", {**ZO, "lr": lr, "max_steps": n_zo, "seed": s}) for s in args.seeds],
    )

    print(
        "\n| run | seed | lr | steps | step (median s) | training s | final dev acc | best dev"
        " acc |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, rows in (
        ("first-order b_v", fo),
        ("ZO b_v, equal steps", [zo_eq]),
        ("ZO b_v, lr tuning", tuned),
        ("ZO b_v, equal time", zo),
    ):
        for r in rows:
            print(
                f"| {label} | {r['kv']['seed']} | {r['kv']['lr']:g} | {r['steps']} |"
                f" {r['step_s']:.3f} | {r['train_s']:.1f} | {100 * r['acc']:.2f} |"
                f" {100 * r['best']:.2f} |"
            )
    (fm, fs), (zm, zs) = summary(fo), summary(zo)
    print(
        f"\nfirst-order b_v: {fm:.2f} ± {fs:.2f} (final dev accuracy, mean ± std over {len(fo)}"
        f" seeds, {n_fo} steps, {fo_train:.1f}s training)"
    )
    print(
        f"ZO b_v:          {zm:.2f} ± {zs:.2f} ({n_zo} steps, "
        f"{statistics.mean(r['train_s'] for r in zo):.1f}s training; lr {lr:g}"
        + (f", chosen on seed {s1}'s dev accuracy among {args.tune}" if args.tune else "")
        + ")"
    )
    print(
        f"ZO - first-order: {zm - fm:+.2f} points; ZO steps / first-order steps: {n_zo / n_fo:.2f};"
        " step time ZO / first-order:"
        f" {zo_eq['step_s'] / statistics.mean(r['step_s'] for r in fo):.2f}"
    )
    print(f"(bench wall time {time.perf_counter() - t0:.0f}s)")
    json.dump(
        {
            "first_order": fo,
            "zo_equal_steps": zo_eq,
            "tuning": tuned,
            "zo": zo,
            "zo_steps": n_zo,
            "zo_lr": lr,
        },
        open(root / "summary.json", "w"),
        indent=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
