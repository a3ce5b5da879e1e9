#!/usr/bin/env python
"""The paper's key finding on this machine: which attention bias to tune (b_q vs b_k vs b_v).

    python bench/finding.py [--workers 2] [--seeds 3] [--out bench_runs/finding] [--only
    encoder|decoder]

Runs every cell through the one training loop (beft.train.Trainer, one thread per run) in W
long-lived worker processes (imports paid once per worker), skips runs that already have a
result.json (never overwrites), then prints mean +- std over seeds, trainable parameter counts, and
paired t-test p-values (v vs q, v vs k; scipy ttest_rel over seeds). Each run's output is in
OUT/<run>.log. Settings are chosen to fit 60 minutes on 2 CPU cores (2 workers); see SETTINGS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from runner import Worker, pool, train_once

ROOT = Path(__file__).resolve().parents[1]

# Encoder: all-MiniLM-L6-v2, low regime (paper sizes: SST-2 1000, RTE 300; CB 100).
ENCODER = {
    "model": "minilm",
    "methods": ["bias:q", "bias:k", "bias:v", "bitfit", "full"],
    "tasks": {
        "sst2": {"epochs": 3, "data.max_length": 64, "data.n_eval": 872},
        "rte": {"epochs": 3, "data.max_length": 128},
        "cb": {"epochs": 5, "data.max_length": 128},
    },
    "common": {
        "regime": "low",
        "batch_size": 16,
        "eval_every": 0,
    },  # evaluate once, after the last epoch
    "lr": {"bias": 3e-2, "bitfit": 3e-3, "full": 5e-5},
}
# Decoder: SmolLM2-135M (bias-free: the q/k/v biases are added), MeZO-style prompts, CE over
# the candidates' mean log-likelihoods.
DECODER = {
    "model": "smollm2",
    "methods": ["bias:q", "bias:k", "bias:v"],
    "tasks": {
        "sst2": {},
        "rte": {"data.max_length": 128, "data.n_train": 64, "data.n_eval": 100},
        "cb": {"data.max_length": 128, "data.n_train": 64, "data.n_eval": 100},
        "copa": {"data.n_train": 64, "data.n_eval": 100},
    },
    "common": {
        "data.n_train": 96,
        "data.n_eval": 200,
        "epochs": 1,
        "batch_size": 8,
        "data.max_length": 96,
    },
    "lr": {"bias": 1e-2},
}
SETTINGS = {"encoder": ENCODER, "decoder": DECODER}


def runs(seeds: list[int], only: str | None) -> list[dict]:
    out = []
    for arch, spec in SETTINGS.items():
        if only and only != arch:
            continue
        for task, over in spec["tasks"].items():
            for method in spec["methods"]:
                name, _, bias = method.partition(":")
                for seed in seeds:
                    kv = {
                        "model": spec["model"],
                        "task": task,
                        "method": name,
                        "seed": seed,
                        "lr": spec["lr"][name],
                        **spec["common"],
                        **over,
                        "threads": 1,
                        "log_every": 50,
                    }
                    if bias:
                        kv["bias"] = bias
                    out.append(
                        {"arch": arch, "task": task, "method": method, "seed": seed, "kv": kv}
                    )
    return out


def run_id(kv: dict) -> str:
    return hashlib.sha1(json.dumps(kv, sort_keys=True).encode()).hexdigest()[:12]


def out_dir(run: dict, root: Path) -> Path:
    method = run["method"].replace(":", "_")
    return root / f"{run['arch']}-{run['task']}-{method}-s{run['seed']}-{run_id(run['kv'])}"


def execute(run: dict, root: Path, worker: Worker | None) -> dict:
    out = out_dir(run, root)
    t = time.perf_counter()
    fresh = not (out / "result.json").is_file()
    result, status = train_once(
        worker, [f"{k}={v}" for k, v in run["kv"].items()], out, root / f"{out.name}.log"
    )
    if result is None:
        print(f"FAILED {out.name}: {status} (log: {root / (out.name + '.log')})", flush=True)
    elif fresh:
        print(f"done {out.name} in {time.perf_counter() - t:.0f}s", flush=True)
    return {**run, "result": result}


def table(done: list[dict]) -> str:
    from scipy.stats import ttest_rel

    lines = []
    for arch, spec in SETTINGS.items():
        cells = [d for d in done if d["arch"] == arch and d["result"]]
        if not cells:
            continue
        tasks = list(spec["tasks"])
        metric = {d["task"]: d["result"]["main_metric"] for d in cells}
        lines += [
            f"\n### {spec['model']} ({arch})",
            "",
            "| method | trainable | "
            + " | ".join(f"{t} ({metric.get(t, '?')})" for t in tasks)
            + " |",
            "|---" * (len(tasks) + 2) + "|",
        ]
        scores: dict = {}
        for method in spec["methods"]:
            row, trainable = [], "—"
            for task in tasks:
                rs = sorted(
                    (d for d in cells if d["task"] == task and d["method"] == method),
                    key=lambda d: d["seed"],
                )
                vals = [d["result"]["final"][d["result"]["main_metric"]] * 100 for d in rs]
                scores[(method, task)] = {d["seed"]: v for d, v in zip(rs, vals)}
                if rs:
                    t = rs[0]["result"]["trainable"]
                    trainable = f"{t['bias']:,} + head" if t["head"] else f"{t['trainable']:,}"
                row.append(
                    f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.1f}"
                    f" (n={len(vals)})"
                    if vals
                    else "—"
                )
            lines.append(f"| {method} | {trainable} | " + " | ".join(row) + " |")
        for other in ("bias:q", "bias:k"):
            row = []
            for task in tasks:
                v, o = scores.get(("bias:v", task), {}), scores.get((other, task), {})
                common = sorted(set(v) & set(o))
                if len(common) >= 2 and any(v[s] != o[s] for s in common):
                    row.append(
                        f"p={ttest_rel([v[s] for s in common], [o[s] for s in common]).pvalue:.3f}"
                    )
                else:
                    row.append("—")
            lines.append(f"| v vs {other[-1]} (paired t) | | " + " | ".join(row) + " |")
    if any(d["arch"] == "encoder" and d["result"] for d in done):
        lines.append(
            "\n'+ head': the new classification head also trains (770 parameters for 2 classes, "
            "1,155 for CB's 3); 'full' counts it in."
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "finding"))
    ap.add_argument("--only", choices=["encoder", "decoder"])
    a = ap.parse_args()
    os.environ.setdefault("BEFT_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    todo = runs(list(range(1, a.seeds + 1)), a.only)
    print(f"{len(todo)} runs, {a.workers} workers, outputs in {root}", flush=True)
    t = time.perf_counter()
    # the longest runs (full fine-tuning) first, so that the workers finish together
    order = sorted(range(len(todo)), key=lambda i: todo[i]["method"] != "full")
    ran = pool(
        [todo[i] for i in order],
        a.workers,
        lambda r, w: execute(r, root, w),
        lambda r: not (out_dir(r, root) / "result.json").is_file(),
    )
    done: list = [None] * len(todo)
    for i, d in zip(order, ran):
        done[i] = d
    minutes = (time.perf_counter() - t) / 60
    text = table(done)
    print(text)
    print(
        f"\nwall time {minutes:.1f} min for the runs not already finished; "
        f"{sum(d['result'] is None for d in done)} failed"
    )
    (root / "table.md").write_text(text + "\n")
    return 0 if all(d["result"] for d in done) else 1


if __name__ == "__main__":
    sys.exit(main())
