"""Helper of bench/gpu_check.sh (see there). One process; settings run in this order because
each changes the model in place: b_v bf16, LoRA r=8 (unloaded after), full fine-tuning (only if
the planner says it fits), then the Linear layers are converted to 8-bit and b_v runs again.

Peak = torch.cuda.max_memory_allocated over warm-up + timed steps (weights included), next to
the planner's prediction for the same configuration (beft/plan.py, flash attention, batch, seq).
AdamW over the trainable parameters; parameters are bf16, so AdamW's states are bf16 too (full
fine-tuning here costs 2 + 2 + 4 bytes per parameter, not mixed precision's 16: the planner's
figure for full assumes an fp32 master copy and is printed for reference only).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument(
        "--steps", type=int, default=5, help="timed steps per setting (after 2 warm-up steps)"
    )
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="run every code path on the CPU with a tiny LLaMA (a test; memory shows 0)",
    )
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("no CUDA device: torch is not installed; GPU check skipped")
        return 0
    smoke = args.cpu_smoke
    if not smoke and (not torch.cuda.is_available() or torch.cuda.device_count() == 0):
        print("no CUDA device: GPU check skipped (nothing to measure on this machine)")
        return 0
    import transformers as tf

    from beft.bias import apply_bias
    from beft.plan import BUILTIN, GB, Method, Setup, arch_from_config, plan

    dev = torch.device("cpu" if smoke else "cuda")
    cuda = torch.cuda if not smoke else None
    sync = cuda.synchronize if cuda else (lambda: None)
    peak_bytes = cuda.max_memory_allocated if cuda else (lambda: 0)
    if cuda:
        props = torch.cuda.get_device_properties(dev)
        print(
            f"{props.name}, {props.total_memory / GB:.1f} GB, torch {torch.__version__}, "
            f"batch {args.batch} x {args.seq} tokens, bf16, random LLaMA-2-7B shape",
            flush=True,
        )
    kw = {k: v for k, v in BUILTIN["llama2-7b"].items() if k != "model_type"}
    if smoke:
        kw.update(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=128,
            vocab_size=512,
        )
        args.batch, args.seq, args.steps = 2, 16, 1
    cfg = tf.LlamaConfig(**kw, attn_implementation="sdpa")
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device(dev):
        model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.train()
    print(f"built on the GPU in {time.time() - t0:.0f} s", flush=True)
    g = torch.Generator(device=dev).manual_seed(1)
    ids = torch.randint(100, cfg.vocab_size - 100, (args.batch, args.seq), device=dev, generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    arch, tokens = arch_from_config(cfg), args.batch * args.seq
    rows = []

    def run(label, net, params, method, dtype):
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
        sync()
        if cuda:
            cuda.reset_peak_memory_stats()
        times = []
        for i in range(2 + args.steps):
            sync()
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            net(**batch).loss.backward()
            opt.step()
            sync()
            if i >= 2:
                times.append(time.perf_counter() - t)
        times.sort()
        step = times[len(times) // 2]
        p = plan(arch, method, Setup(dtype=dtype, batch=args.batch, seq=args.seq))
        rows.append(
            (
                label,
                sum(q.numel() for q in params),
                step,
                tokens / step,
                peak_bytes() / GB,
                p["peak"] / GB,
            )
        )
        print(f"  {label}: {step * 1000:.0f} ms/step, peak {rows[-1][4]:.1f} GB", flush=True)
        del opt
        for q in params:
            q.grad = None
        gc.collect()
        if cuda:
            cuda.empty_cache()

    def attempt(label, fn):
        try:
            fn()
        except torch.cuda.OutOfMemoryError:
            rows.append((label, 0, float("nan"), float("nan"), float("nan"), float("nan")))
            print(f"  {label}: out of memory", flush=True)
            gc.collect()
            if cuda:
                cuda.empty_cache()

    # b_v, bf16 (added zero biases; removed afterwards so the next setting sees the base model)
    def bv():
        sel = apply_bias(model, "v")
        run(
            "b_v (beft), bf16",
            model,
            list(sel.trainable_parameters().values()),
            Method.parse("bias", "v"),
            "bf16",
        )
        for site in sel.sites:
            site.module.bias = None

    attempt("b_v (beft), bf16", bv)

    def lora():
        import peft

        net = peft.get_peft_model(
            model,
            peft.LoraConfig(
                r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]
            ),
        )
        run(
            "LoRA r=8 q,v (peft), bf16",
            net,
            [q for q in net.parameters() if q.requires_grad],
            Method.parse("lora", r=8, targets="qv"),
            "bf16",
        )
        net.unload()

    try:
        import peft  # noqa: F401

        attempt("LoRA r=8 q,v (peft), bf16", lora)
    except ImportError:
        print("  LoRA skipped: peft is not installed")

    need = sum(q.numel() for q in model.parameters()) * 8  # bf16 w + g + AdamW m, v
    free = cuda.mem_get_info()[0] if cuda else float("inf")
    if args.skip_full:
        print("  full fine-tuning skipped (--skip-full)")
    elif need + 6 * GB > free:
        print(
            f"  full fine-tuning skipped: needs ~{need / GB:.0f} GB + activations, {free / GB:.0f}"
            " GB free"
        )
    else:

        def full():
            for q in model.parameters():
                q.requires_grad_(True)
            run(
                "full fine-tuning, bf16 (bf16 AdamW states)",
                model,
                list(model.parameters()),
                Method.parse("full"),
                "bf16",
            )
            for q in model.parameters():
                q.requires_grad_(False)

        attempt("full fine-tuning, bf16 (bf16 AdamW states)", full)

    try:
        import bitsandbytes as bnb
    except ImportError:
        bnb = None
        print("  8-bit skipped: bitsandbytes is not installed")
    if bnb is not None:
        t0 = time.time()
        for name, mod in list(model.model.layers.named_modules()):
            for child_name, child in list(mod.named_children()):
                if isinstance(child, torch.nn.Linear):
                    new = bnb.nn.Linear8bitLt(
                        child.in_features,
                        child.out_features,
                        bias=False,
                        has_fp16_weights=False,
                        threshold=6.0,
                    )
                    new.weight = bnb.nn.Int8Params(
                        child.weight.data.to("cpu"), requires_grad=False, has_fp16_weights=False
                    )
                    setattr(mod, child_name, new.to(dev))  # quantized on the move to the GPU
                    del child
        gc.collect()
        if cuda:
            cuda.empty_cache()
        print(f"  converted to 8-bit in {time.time() - t0:.0f} s", flush=True)

        def bv8():
            sel = apply_bias(model, "v")
            for site in sel.sites:  # added biases: zero, bf16 like the compute dtype
                site.module.bias.data = torch.zeros_like(site.module.bias, dtype=torch.bfloat16)
            run(
                "b_v (beft), 8-bit base",
                model,
                list(sel.trainable_parameters().values()),
                Method.parse("bias", "v"),
                "int8",
            )

        attempt("b_v (beft), 8-bit base", bv8)

    print()
    print(
        "| setting | trainable | step (ms) | tokens/s | peak GPU memory (GB) | planner peak (GB) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, step, tps, peak, pred in rows:
        print(f"| {label} | {n:,} | {step * 1000:.0f} | {tps:,.0f} | {peak:.1f} | {pred:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
