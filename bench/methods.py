#!/usr/bin/env python
"""Every method of the config's `method` field on real models and data, one table.

    python bench/methods.py [--workers 2] [--seed 1] [--out bench_runs/methods]

all-MiniLM-L6-v2 on SST-2 (low regime: 1,000 training examples; the 872-example dev set; max length
64, batch 16, 2 epochs, one evaluation at the end): b_v, the bias reparametrisations (lora, vera,
vera1d, dora, pissa on b_v), full fine-tuning, BitFit, rand_uniform (as many random bias entries as
b_v) and peft's LoRA r=8 on q/v. SmolLM2-135M on the SST-2 prompt (96 training / 200 dev examples,
1 epoch, batch 8): b_v (added), peft prefix tuning, in-context learning (4 demonstrations) and
zero-shot. One seed: this shows that every method runs through the one loop and what it reaches at
this size, not a ranking. Finished runs are reused (never overwritten).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from runner import pool, train_once

ROOT = Path(__file__).resolve().parents[1]
ENC = {
    "model": "minilm",
    "task": "sst2",
    "regime": "low",
    "bias": "v",
    "batch_size": 16,
    "epochs": 2,
    "data.max_length": 64,
    "data.n_eval": 872,
    "eval_every": 0,
    "threads": 1,
    "log_every": 50,
}
DEC = {
    "model": "smollm2",
    "task": "sst2",
    "bias": "v",
    "batch_size": 8,
    "epochs": 1,
    "data.n_train": 96,
    "data.n_eval": 200,
    "data.max_length": 96,
    "threads": 1,
    "log_every": 50,
}
RUNS = [
    ("minilm", "bias", ENC, {"lr": 3e-2}),
    *[("minilm", m, ENC, {"lr": 3e-2}) for m in ("lora", "vera", "vera1d", "dora", "pissa")],
    ("minilm", "full", ENC, {"lr": 5e-5}),
    ("minilm", "bitfit", ENC, {"lr": 3e-3}),
    ("minilm", "rand_uniform", ENC, {"lr": 3e-2}),
    ("minilm", "peft_lora", ENC, {"lr": 1e-3}),
    ("smollm2", "bias", DEC, {"lr": 1e-2}),
    ("smollm2", "prefix", DEC, {"lr": 1e-2}),
    ("smollm2", "icl", DEC, {"icl.k": 4, "data.max_length": 256}),
    ("smollm2", "zero_shot", DEC, {}),
]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "methods"))
    a = ap.parse_args()
    os.environ.setdefault("BEFT_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for model, method, base, over in RUNS:
        kv = {**base, **over, "method": method, "seed": a.seed}
        digest = hashlib.sha1(json.dumps(kv, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{model}-{method}-{digest}"
        items.append((model, method, kv, root / name))
    t0 = time.perf_counter()

    def run(item, worker):
        model, method, kv, out = item
        t = time.perf_counter()
        res, status = train_once(
            worker, [f"{k}={v}" for k, v in kv.items()], out, out.with_suffix(".log")
        )
        print(
            f"{'done' if res else 'FAILED'} {out.name}"
            f" ({time.perf_counter() - t:.0f}s){'' if res else ': ' + status}",
            flush=True,
        )
        return res

    results = pool(items, a.workers, run, lambda it: not (it[3] / "result.json").is_file())
    print(
        "\n| model | method | trainable (bias / adapter + head) | per mille of the base | dev"
        " metric | loop s (0: evaluation only) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for (model, method, kv, out), r in zip(items, results):
        if r is None:
            print(f"| {model} | {method} | failed | | | |")
            continue
        c = r["trainable"]
        part = c.get("bias", 0) or c.get("adapter", 0)
        trainable = f"{part:,} + {c['head']:,}" if c["head"] else f"{c['trainable']:,}"
        pm = 1000.0 * part / c["total"] if method != "full" else 1000.0
        metric = r["main_metric"]
        print(
            f"| {model} | {method} | {trainable} | {pm:.4f} | {metric}"
            f" {100 * r['final'][metric]:.1f} | {r['wall_time_s']:.0f} |"
        )
    print(f"\n(bench wall time {time.perf_counter() - t0:.0f}s for the runs not already finished)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
