#!/usr/bin/env python
"""Step time and peak memory of full fine-tuning, BitFit, b_v (beft and peft's BEFT tuner), LoRA,
b_v with activation checkpointing, b_v trained by ZO (forward passes only) and two forward-only
floors, on all-MiniLM-L6-v2 and a SmolLM2-135M-shaped LLaMA (CPU, fp32).

    python bench/throughput.py                      # both models, default settings and rounds
    python bench/throughput.py --quick              # 1 timed round, MiniLM only, no memory
    python bench/throughput.py --models smollm2 --rounds 5 --threads 1
    python bench/throughput.py --settings bv bv_ckpt bv_zo fwd fwd_eval --ref bv
    python bench/throughput.py --models smollm2 --batch 1 --seq 2048   # your own batch x length
    python bench/throughput.py --peak minilm bv     # worker: one setting's peak memory, as JSON

Settings: full, bitfit, bv, peft_bv, lora (first-order, AdamW); bv_ckpt (b_v, activation
checkpointing as `activation_checkpointing=true` sets it: non-reentrant, every layer); bv_zo (one
ZO step on the b_v biases alone: beft.zo.estimator.ZOOptimizer, n=1, eps 1e-3, Adam update, two
no-grad
forwards in eval mode, as beft/zo/step.py's ZOStep runs them; a new head stays frozen here, where
the training loop's default zo.head=first_order adds a forward + head backward); fwd (train mode,
no_grad) and fwd_eval (eval mode, no_grad: the forward a ZO step runs twice).

Timing: every setting is built once in this process (same weights, inputs, AdamW over the
trainable parameters, lr 1e-5, weight decay 0) and the settings are run interleaved, A B C ...
A B C, one step each per round after a warm-up round; each round gives a ratio to the same
round's step of the reference setting (--ref: full fine-tuning by default), and the table prints
medians. Memory: each setting runs 2 training steps in its own fresh process (--jobs at once);
peak = VmHWM - VmRSS after model, optimizer and inputs exist and every weight is paged in (the
kernel's peak-RSS counter is reset by writing 5 to /proc/self/clear_refs first).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402  (after the environment above)

SETTINGS = ["full", "bitfit", "bv", "peft_bv", "lora", "bv_ckpt", "bv_zo", "fwd", "fwd_eval"]
LABELS = {
    "full": "full fine-tuning",
    "bitfit": "all biases (BitFit)",
    "bv": "b_v (beft)",
    "peft_bv": "b_v (peft BeftConfig)",
    "lora": "LoRA r=8 q,v (peft)",
    "bv_ckpt": "b_v, activation checkpointing",
    "bv_zo": "b_v, ZO step (n=1: 2 eval forwards)",
    "fwd": "forward only (train mode, no_grad)",
    "fwd_eval": "forward only (eval mode, no_grad)",
}
NO_GRAD = ("fwd", "fwd_eval", "bv_zo")  # settings that never call backward
SHAPES = {"minilm": (16, 128), "smollm2": (4, 256)}
V_NAMES = {"minilm": ["value"], "smollm2": ["v_proj"]}
QV_NAMES = {"minilm": ["query", "value"], "smollm2": ["q_proj", "v_proj"]}


def base_model(name: str):
    """(model, head module names): MiniLM with its pretrained weights and a new 2-class head;
    the SmolLM2 shape randomly initialised from the real config."""
    import transformers as tf

    from beft.models import load_config, load_model

    torch.manual_seed(0)
    if name == "minilm":
        model, _, head = load_model("minilm", "encoder", num_labels=2)
        return model, head
    cfg = load_config("smollm2")
    cfg.quantization_config = None
    return tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32), []


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not an integer >= 1")
    return n


def shape_of(name: str, batch: int | None = None, seq: int | None = None) -> tuple[int, int]:
    """(batch, tokens): the model's default shape (SHAPES), with --batch / --seq where given."""
    b, t = SHAPES[name]
    return b if batch is None else batch, t if seq is None else seq


def batch_for(name: str, vocab: int, shape: tuple[int, int]) -> dict:
    b, t = shape
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(100, vocab - 100, (b, t), generator=g)
    labels = torch.randint(0, 2, (b,), generator=g) if name == "minilm" else ids
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def setup(name: str, setting: str, model, head: list[str]):
    """(model to call, trainable parameters) for one setting; model is modified in place."""
    from beft.bias import apply_bias

    if setting in ("full", "fwd", "fwd_eval"):
        for p in model.parameters():
            p.requires_grad_(setting == "full")
    elif setting in ("bitfit", "bv", "bv_ckpt"):
        apply_bias(model, "all" if setting == "bitfit" else "v", head=head)
        if (
            setting == "bv_ckpt"
        ):  # what the recipe does for activation_checkpointing=true
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    elif setting == "bv_zo":
        sel = apply_bias(model, "v", head=head)
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()  # both forwards of a ZO step see the same network (no dropout)
        return model, list(sel.bias_parameters().values())
    else:
        import peft

        save = head or None
        cfg = (
            peft.BeftConfig(target_modules=V_NAMES[name], modules_to_save=save)
            if setting == "peft_bv"
            else peft.LoraConfig(
                r=8,
                lora_alpha=16,
                lora_dropout=0.0,
                target_modules=QV_NAMES[name],
                modules_to_save=save,
            )
        )
        model = peft.get_peft_model(model, cfg)
    model.train()
    return model, [p for p in model.parameters() if p.requires_grad]


def make_step(model, params, batch, setting):
    if setting in ("fwd", "fwd_eval"):
        model.train(setting == "fwd")

        def step():
            with torch.no_grad():
                model(**batch)

        return step
    if setting == "bv_zo":
        from beft.zo.estimator import ZOOptimizer

        zo = ZOOptimizer(params, lr=1e-3, eps=1e-3, n=1, update="adam")
        count = iter(range(10**9))

        def step():
            zo.step(lambda: float(model(**batch).loss), next(count))

        return step
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        opt.step()

    return step


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_worker(name: str, setting: str, shape: tuple[int, int], steps: int = 2) -> dict:
    """Peak RSS over the loaded-model baseline for a few steps of one setting (run in a fresh
    process)."""
    model, head = base_model(name)
    model, params = setup(name, setting, model, head)
    batch = batch_for(name, model.config.vocab_size, shape)
    step = make_step(model, params, batch, setting)
    # warm-up on a tiny batch: kernel and autograd-engine initialisation is not training memory
    small = {k: v[:1, :8] if v.dim() == 2 else v[:1] for k, v in batch.items()}
    with torch.set_grad_enabled(setting not in NO_GRAD):
        loss = model(**small).loss
    if setting not in NO_GRAD:
        loss.backward()
    del loss
    for p in params:
        p.grad = None
    # page in every weight: pretrained weights are read lazily from the safetensors file, and the
    # tiny batch above touches only a few embedding rows, so without this the first real batch's
    # embedding lookups (plus file read-ahead) paged in most of MiniLM's 45 MiB word embedding
    # inside the measured window
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.sum()
    import gc

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    base = _status("VmRSS")
    for _ in range(steps):
        step()
    peak = _status("VmHWM")
    return {
        "model": name,
        "setting": setting,
        "batch": shape[0],
        "seq": shape[1],
        "baseline_rss": base,
        "peak_delta": peak - base,
        "trainable": sum(p.numel() for p in params) if setting not in ("fwd", "fwd_eval") else 0,
        "weights": sum(p.numel() * p.element_size() for p in model.parameters()),
    }


def measure_peak(
    name: str, setting: str, shape: tuple[int, int], threads: int = 1, timeout: float = 600
) -> dict:
    """Run peak_worker in a fresh interpreter."""
    # a fixed mmap threshold makes glibc return every freed tensor to the OS, so that the RSS
    # peak follows live tensor memory (like torch.cuda.max_memory_allocated) instead of malloc's
    # cached free space
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--peak",
            name,
            setting,
            "--threads",
            str(threads),
            "--batch",
            str(shape[0]),
            "--seq",
            str(shape[1]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(ROOT),
    )
    if out.returncode != 0:
        raise RuntimeError(f"peak worker {name}/{setting} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_settings(
    name: str, settings: list[str], rounds: int, shape: tuple[int, int], log=print
) -> dict:
    """Interleaved timing: one step per setting per round, after one warm-up round."""
    base, head = base_model(name)
    batch = batch_for(name, base.config.vocab_size, shape)
    steps, trainable = {}, {}
    for s in settings:
        model, params = setup(name, s, copy.deepcopy(base), head)
        steps[s] = make_step(model, params, batch, s)
        trainable[s] = sum(p.numel() for p in params) if s not in ("fwd", "fwd_eval") else 0
    del base
    times = {s: [] for s in settings}
    for r in range(rounds + 1):
        for s in settings:
            t0 = time.perf_counter()
            steps[s]()
            dt = time.perf_counter() - t0
            if r > 0:
                times[s].append(dt)
        if r > 0:
            log(f"  {name} round {r}: " + "  ".join(f"{s} {times[s][-1]:.3f}s" for s in settings))
    return {"times": times, "trainable": trainable, "shape": shape, "tokens": shape[0] * shape[1]}


def table(name: str, res: dict, mem: dict | None, ref: str) -> str:
    times, base = res["times"], res["times"][ref]
    b, t = res["shape"]
    lines = [
        f"### {name} (batch {b} x {t} tokens, fp32)",
        "",
        (
            f"| setting | trainable | step (median s) | ratio to {ref} (median of rounds) | ratio"
            " range | tokens/s | peak memory (MiB) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, ts in times.items():
        ratios = [x / y for x, y in zip(ts, base)]
        med = statistics.median(ts)
        peak = f"{mem[s]['peak_delta'] / 2**20:,.0f}" if mem and s in mem else "-"
        lines.append(
            f"| {LABELS[s]} | {res['trainable'][s]:,} | {med:.3f} | {statistics.median(ratios):.2f}"
            f" | {min(ratios):.2f}-{max(ratios):.2f} | {res['tokens'] / med:,.0f} | {peak} |"
        )
    if "bv_zo" in times:  # the ZO step against each forward-only floor measured
        lines.append("")
        for f in ("fwd_eval", "fwd"):
            if f not in times:
                continue
            r = [x / y for x, y in zip(times["bv_zo"], times[f])]
            line = (
                f"ZO step / {LABELS[f]}: time {statistics.median(r):.2f} "
                f"(rounds {min(r):.2f}-{max(r):.2f})"
            )
            if mem and "bv_zo" in mem and f in mem:
                line += f", peak memory {mem['bv_zo']['peak_delta'] / mem[f]['peak_delta']:.2f}"
            lines.append(line + "  ")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["minilm", "smollm2"], choices=list(SHAPES))
    ap.add_argument("--settings", nargs="+", default=SETTINGS, choices=SETTINGS)
    ap.add_argument(
        "--rounds", type=int, default=None, help="timed rounds (default: minilm 5, smollm2 3)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is the most stable on a shared box)",
    )
    ap.add_argument(
        "--ref",
        default=None,
        choices=SETTINGS,
        help="setting the time ratios are taken against (default: full if run, else the first)",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="peak-memory workers run at once (memory is per process)",
    )
    ap.add_argument("--batch", type=positive, help="batch size (default: minilm 16, smollm2 4)")
    ap.add_argument("--seq", type=positive, help="tokens per example (minilm 128, smollm2 256)")
    ap.add_argument("--quick", action="store_true", help="MiniLM only, 1 timed round, no memory")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--peak", nargs=2, metavar=("MODEL", "SETTING"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peak:
        print(json.dumps(peak_worker(*args.peak, shape_of(args.peak[0], args.batch, args.seq))))
        return 0
    models = ["minilm"] if args.quick else args.models
    ref = args.ref or ("full" if "full" in args.settings else args.settings[0])
    if ref not in args.settings:
        ap.error(f"--ref {ref} is not among --settings")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs visible")
    for name in models:
        rounds = 1 if args.quick else (args.rounds or {"minilm": 5, "smollm2": 3}[name])
        shape = shape_of(name, args.batch, args.seq)
        res = time_settings(name, args.settings, rounds, shape)
        mem = None
        if not (args.quick or args.no_memory):
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                peaks = pool.map(
                    lambda s: measure_peak(name, s, shape, args.threads), args.settings
                )
                mem = dict(zip(args.settings, peaks))
        print()
        print(table(name, res, mem, ref))
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
