#!/usr/bin/env python
"""7B shapes through the real loop: write a random checkpoint with a model's exact shapes, train b_v
for 2 steps with each launcher, print per-rank peak memory, load and step time, and the planner.

    python bench/scale.py write llama2-7b /data/llama2-7b-random            # 13.8 GB, bf16
    python bench/scale.py run /data/llama2-7b-random --launchers zero3,fsdp,8bit
    python bench/scale.py all llama2-7b /data/llama2-7b-random --json out.json
    python bench/scale.py report /data/llama2-7b-random --launchers fsdp   # runs finished earlier

write: the config of a built-in shape (beft/plan.py: llama2-7b, opt-6.7b, gpt-j-6b; --layers,
--hidden, --intermediate, --vocab shrink it), random values streamed tensor by tensor into
safetensors files of at most --shard-gb (transformers' 10 GB default gives LLaMA-2-7b-hf's two
files), never more than one tensor in memory. No tokenizer of these models is installable offline:
SmolLM2's (49,152 ids) is copied, and the vocabulary is raised to hold its ids (--vocab).

run: each launcher in its own fresh process tree, one after the other: `deepspeed --num_gpus 2
--config ds_configs/zero3.json`, `torchrun --nproc_per_node 2 --fsdp`, one process with
`--load_in_8bit`, one plain process (`local`); SST-2 prompts, batch 2 x 32 tokens, 2 steps. Memory
is what beft's trainer samples in each rank (beft/memory.py): peak RssAnon every 0.2 s (anonymous
memory: the mapped checkpoint's page cache is not in it) and the kernel's VmHWM (mapped pages
included); "above start" subtracts what a rank held after its imports (RssAnon, VmRSS). One process
keeps a checkpoint stored in the loaded dtype memory-mapped (its weights are file pages, not
anonymous memory), so VmHWM above start is the figure comparable across launchers and with the
planner's peak (beft/plan.py, load-time term included), printed beside it with their ratio. An 8-bit
load holds its int8 weights in anonymous memory and only reads the 16-bit file through its mapping
(clean page cache the kernel reclaims, yet counted in VmHWM): its comparable figure is RssAnon above
start, the last column.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DTYPES = {"bf16": ("BF16", 2), "fp16": ("F16", 2), "fp32": ("F32", 4)}
LAUNCHERS = ("zero3", "fsdp", "8bit", "local")


# ------------------------------------------------------------------------------------ write


def shape_config(
    name: str, layers: int = 0, hidden: int = 0, intermediate: int = 0, vocab: int = 0
):
    """A transformers config with a built-in model's shapes (beft/plan.py BUILTIN), optionally
    cut."""
    import transformers as tf

    from beft.plan import ALIASES, BUILTIN

    key = ALIASES.get(name.lower(), name.lower())
    if key not in BUILTIN:
        raise SystemExit(f"error: unknown shape {name!r}; built-in: {', '.join(sorted(BUILTIN))}")
    spec = dict(BUILTIN[key])
    mt = spec.pop("model_type")
    spec.pop("dropout", None)
    n_layers = "n_layer" if mt == "gptj" else "num_hidden_layers"
    n_hidden = "n_embd" if mt == "gptj" else "hidden_size"
    n_inter = {"gptj": "n_inner", "opt": "ffn_dim"}.get(mt, "intermediate_size")
    for attr, value in (
        (n_layers, layers),
        (n_hidden, hidden),
        (n_inter, intermediate),
        ("vocab_size", vocab),
    ):
        if value:
            spec[attr] = value
    if mt == "opt" and hidden:
        spec["word_embed_proj_dim"] = hidden
    cfg = tf.CONFIG_MAPPING[mt](**spec)  # derived sizes (head_dim) follow the overrides
    return cfg


def tensor_specs(config) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the causal LM's checkpoint, from a meta-device build."""
    import torch
    import transformers as tf

    with torch.device("meta"):
        model = tf.AutoModelForCausalLM.from_config(config)
    state = model.state_dict()
    tied = (
        {n for n in getattr(model, "all_tied_weights_keys", {}) or {}}
        if config.tie_word_embeddings
        else set()
    )
    return [(n, tuple(t.shape)) for n, t in state.items() if n not in tied]


def random_tensor(name: str, shape: tuple[int, ...], dtype, gen):
    import torch

    if len(shape) == 1:  # norms start at one, biases at zero
        return (torch.ones if name.endswith("weight") else torch.zeros)(shape, dtype=dtype)
    return (torch.randn(shape, generator=gen) * 0.02).to(dtype)


def write_checkpoint(
    config,
    out: Path,
    dtype: str = "bf16",
    shard_gb: float = 10.0,
    seed: int = 0,
    tokenizer: str = "smollm2",
) -> dict:
    """Stream a random checkpoint into out/ (safetensors shards + index), one tensor at a time."""
    import torch


    tok = load_tokenizer(tokenizer)
    if len(tok) > config.vocab_size:
        raise SystemExit(
            f"error: the {tokenizer} tokenizer has {len(tok):,} ids; --vocab {config.vocab_size:,} "
            f"cannot embed them (use --vocab {len(tok)} or more)"
        )
    if tok.eos_token is None:  # a BERT WordPiece tokenizer as a decoder's: [SEP] ends a text
        tok.eos_token = tok.sep_token
    config.eos_token_id = tok.eos_token_id
    config.bos_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
    config.pad_token_id = tok.pad_token_id
    st_dtype, nbytes = DTYPES[dtype]
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    specs = tensor_specs(config)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for (
        name,
        shape,
    ) in specs:  # transformers' rule: start a new file when the next tensor would overflow
        b = nbytes * _numel(shape)
        if shards[-1] and size + b > shard_gb * 1e9:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += b
    if out.exists():
        raise SystemExit(f"error: {out} exists; remove it or choose another folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = (
            f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            if len(shards) > 1
            else "model.safetensors"
        )
        header, offset = {}, 0
        for name, shape in shard:
            b = nbytes * _numel(shape)
            header[name] = {
                "dtype": st_dtype,
                "shape": list(shape),
                "data_offsets": [offset, offset + b],
            }
            offset += b
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(tmp / fname, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for name, shape in shard:
                t = random_tensor(name, shape, torch_dtype, gen).contiguous()
                f.write(memoryview(t.view(torch.uint8).numpy()))
                weight_map[name] = fname
                del t
        total += offset
    if len(shards) > 1:
        (tmp / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
        )
    config.dtype = torch_dtype
    config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    files = {f.name: f.stat().st_size for f in sorted(out.glob("*.safetensors"))}
    params = sum(_numel(s) for _, s in specs)
    return {
        "folder": str(out),
        "params": params,
        "bytes": total,
        "files": files,
        "vocab": config.vocab_size,
    }


def load_tokenizer(spec: str):
    """smollm2 | minilm | minilm:N (MiniLM's WordPiece cut to its first N entries: special tokens,
    characters and the commonest words; a small vocabulary keeps a cut-down model's embedding from
    outweighing its layers, as in a 7B model where it is 2% of the parameters)."""
    import transformers as tf

    from beft.models import resolve

    name, _, n = spec.partition(":")
    if name not in ("smollm2", "minilm") or (n and not n.isdigit()):
        raise SystemExit(f"error: --tokenizer {spec!r}: use smollm2, minilm or minilm:N")
    if not n:
        return tf.AutoTokenizer.from_pretrained(resolve(name))
    if name != "minilm":
        raise SystemExit("error: only minilm's WordPiece vocabulary can be cut (minilm:N)")
    words = (Path(resolve("minilm")) / "vocab.txt").read_text().splitlines()[: int(n)]
    return tf.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# -------------------------------------------------------------------------------------- run


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(ckpt: Path, out: Path, precision: str, steps: int, length: int) -> list[str]:
    return [
        f"model={ckpt}",
        "task=sst2",
        "bias=v",
        "data.n_train=8",
        "data.n_eval=2",
        "data.eval_batch_size=2",
        "batch_size=2",
        f"max_steps={steps}",
        "epochs=1",
        f"data.max_length={length}",
        "lr=1e-3",
        "threads=1",
        "log_every=1",
        f"precision={precision}",
        f"output_dir={out}",
        "overwrite=true",
    ]


def command(launcher: str, args: list[str]) -> list[str]:
    script = str(ROOT / "launch" / "train.py")
    bin_ = Path(sys.executable).parent
    if launcher == "zero3":
        return [
            str(bin_ / "deepspeed"),
            "--num_gpus",
            "2",
            "--master_port",
            str(_port()),
            script,
            "--config",
            str(ROOT / "ds_configs" / "zero3.json"),
            *args,
        ]
    if launcher == "fsdp":
        return [
            str(bin_ / "torchrun"),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_port()),
            script,
            "--fsdp",
            *args,
        ]
    if launcher == "8bit":
        return [sys.executable, script, "--load_in_8bit", *args]
    if launcher == "local":
        return [sys.executable, script, *args]
    raise SystemExit(f"error: unknown launcher {launcher!r}; choose from {', '.join(LAUNCHERS)}")


def run_one(
    launcher: str, ckpt: Path, root: Path, precision: str, steps: int, length: int, timeout: int
) -> dict:
    out = root / launcher
    prec = precision
    if launcher == "8bit" and (precision == "auto" or not _gpu()):
        # bitsandbytes' own backward computes g @ W in 16 bits on a CPU: the slow layout that
        # beft/half_linear.py avoids for plain layers (14.7 s vs 0.35 s in fp32 per 11008 x 4096
        # int8 layer and 32 tokens, measured here), so the CPU's 8-bit row computes in fp32
        prec = "fp32"
    env = {
        "BEFT_DATA_DIR": str(ROOT.parent / "shared" / "data"),
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    log = (
        root / f"{launcher}.log"
    )  # a file, not a pipe: the ranks outlive this process if it is stopped
    with open(log, "w") as f:
        p = subprocess.run(
            command(launcher, train_args(ckpt, out, prec, steps, length)),
            stdout=f,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=str(ROOT),
            timeout=timeout,
        )
    p.stdout = p.stderr = log.read_text()
    wall = time.perf_counter() - t0
    row = {
        "launcher": launcher,
        "ranks": 2 if launcher in ("zero3", "fsdp") else 1,
        "wall_s": round(wall, 1),
        "rc": p.returncode,
        "precision": prec,
    }
    if p.returncode != 0:
        row["error"] = (p.stderr or p.stdout)[-2000:]
        return row
    return collect(out, row)


def collect(out: Path, row: dict) -> dict:
    """Add a finished run's memory and times (its result.json and metrics.jsonl) to a table row."""
    res = json.loads((out / "result.json").read_text())
    steps_log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = [2 / r["examples_per_s"] for r in steps_log if "examples_per_s" in r]
    mem = res["memory"]
    row.update(
        peak_anon_gb=max(mem["peak_rss_anon_gb"]),
        start_anon_gb=max(mem["start_rss_anon_gb"]),
        vm_hwm_gb=max(mem["vm_hwm_gb"]),
        start_rss_gb=max(mem["start_rss_gb"]),
        load_s=mem["setup_s"],
        step_s=round(sum(step_s) / len(step_s), 1) if step_s else None,
    )
    row["above_start_gb"] = round(row["peak_anon_gb"] - row["start_anon_gb"], 3)
    row["rss_above_start_gb"] = round(row["vm_hwm_gb"] - row["start_rss_gb"], 3)
    return row


def predicted(ckpt: Path, launcher: str, precision: str, length: int) -> float:
    """The planner's per-rank peak (GB) for the same run: b_v, batch 1 per rank x length tokens."""
    from beft.plan import GB, Method, Setup, load_arch, plan

    arch = load_arch(str(ckpt))
    dtype = {"8bit": "int8"}.get(launcher, "bf16" if precision in ("bf16", "fp16") else "fp32")
    ranks = 2 if launcher in ("zero3", "fsdp") else 1
    setup = Setup(
        dtype=dtype,
        zero=3 if launcher == "zero3" else 0,
        fsdp=launcher == "fsdp",
        gpus=ranks,
        batch=2 // ranks,
        seq=length,
        kernel="math",
    )
    return plan(arch, Method("bias", ("v",)), setup)["peak"] / GB


def table(meta: dict, rows: list[dict]) -> str:
    lines = [
        (
            f"checkpoint: {meta.get('folder')} ({meta.get('params', 0) / 1e9:.2f} B parameters,"
            f" {meta.get('bytes', 0) / 1e9:.2f} GB, files {meta.get('files')}, vocab"
            f" {meta.get('vocab')})"
        ),
        "",
        (
            "| launcher | ranks | precision | peak RssAnon / rank (GB) | RssAnon above start |"
            " VmHWM / rank (GB) | VmHWM above start | load (s) | step (s) | planner (GB) | VmHWM"
            " above start / planner | RssAnon above start / planner |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("rc"):
            lines.append(
                f"| {r['launcher']} | {r['ranks']} | {r['precision']} | failed (rc {r['rc']}) "
                "| | | | | | | | |"
            )
            continue
        plan = r.get("planner_gb") or float("nan")
        lines.append(
            f"| {r['launcher']} | {r['ranks']} | {r['precision']} | {r['peak_anon_gb']:.2f} | "
            f"{r['above_start_gb']:.2f} | {r['vm_hwm_gb']:.2f} | {r['rss_above_start_gb']:.2f} | "
            f"{r['load_s']:.0f} | {r['step_s']} | {plan:.2f} | "
            f"{r['rss_above_start_gb'] / plan:.2f} | {r['above_start_gb'] / plan:.2f} |"
        )
    return "\n".join(lines)


def run_all(
    ckpt: Path,
    launchers: list[str],
    precision: str,
    steps: int,
    length: int,
    timeout: int,
    workdir: Path | None,
) -> list[dict]:
    root = workdir or ckpt.parent / (ckpt.name + "-runs")
    rows = []
    for launcher in launchers:
        print(f"[scale] {launcher} ...", file=sys.stderr, flush=True)
        row = run_one(launcher, ckpt, root, precision, steps, length, timeout)
        if not row.get("rc"):
            row["planner_gb"] = round(predicted(ckpt, launcher, row["precision"], length), 3)
        print(f"[scale] {launcher}: {json.dumps(row)[:400]}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def write(args) -> dict:
    cfg = shape_config(args.shape, args.layers, args.hidden, args.intermediate, args.vocab)
    t0 = time.perf_counter()
    meta = write_checkpoint(cfg, args.out, args.dtype, args.shard_gb, tokenizer=args.tokenizer)
    meta["write_s"] = round(time.perf_counter() - t0, 1)
    print(f"[scale] wrote {json.dumps(meta)}", file=sys.stderr, flush=True)
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("write", "all"):
        w = sub.add_parser(name)
        w.add_argument("shape")
        w.add_argument("out", type=Path)
        w.add_argument("--layers", type=int, default=0)
        w.add_argument("--hidden", type=int, default=0)
        w.add_argument("--intermediate", type=int, default=0)
        w.add_argument("--vocab", type=int, default=49152, help="0: the model's own (ids must fit)")
        w.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
        w.add_argument("--shard-gb", type=float, default=10.0)
        w.add_argument(
            "--tokenizer",
            default="smollm2",
            help=(
                "a model whose tokenizer is copied: smollm2 "
                "(49,152 ids) or minilm (BERT WordPiece, 30,522)"
            ),
        )
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    rep = sub.add_parser("report", help="the table of runs already finished under --workdir")
    rep.add_argument("out", type=Path)
    for p in (r, rep, sub.choices["all"]):
        p.add_argument("--launchers", default="zero3,fsdp,8bit")
        p.add_argument("--precision", default="bf16")
        p.add_argument("--steps", type=int, default=2)
        p.add_argument("--length", type=int, default=32)
        p.add_argument("--timeout", type=int, default=3600)
        p.add_argument("--workdir", type=Path, default=None)
        p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    meta = {}
    if args.cmd == "write":  # stdout: the JSON document alone, whatever libraries print meanwhile
        from beft.cli import machine_output

        with machine_output() as emit:
            emit(write(args))
        return 0
    if args.cmd == "all":
        meta = write(args)
    if not meta:
        files = {f.name: f.stat().st_size for f in sorted(args.out.glob("*.safetensors"))}
        cfg = json.loads((args.out / "config.json").read_text())
        meta = {
            "folder": str(args.out),
            "files": files,
            "bytes": sum(files.values()),
            "vocab": cfg.get("vocab_size"),
        }
    launchers = [x for x in args.launchers.split(",") if x]
    for x in launchers:
        command(x, [])  # unknown names fail before anything runs
    if args.cmd == "report":  # runs that finished earlier (e.g. started by a run that was stopped)
        root = args.workdir or args.out.parent / (args.out.name + "-runs")
        rows = []
        for x in launchers:
            cfg = (root / x / "config.yaml").read_text()
            prec = next(
                line.split(":", 1)[1].strip()
                for line in cfg.splitlines()
                if line.startswith("precision:")
            )
            row = collect(
                root / x,
                {
                    "launcher": x,
                    "ranks": 2 if x in ("zero3", "fsdp") else 1,
                    "rc": 0,
                    "precision": prec,
                },
            )
            row["planner_gb"] = round(predicted(args.out, x, prec, args.length), 3)
            rows.append(row)
    else:
        rows = run_all(
            args.out, launchers, args.precision, args.steps, args.length, args.timeout, args.workdir
        )
    print(table(meta, rows))
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": meta, "rows": rows}, indent=1))
    return 0 if all(not r.get("rc") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
