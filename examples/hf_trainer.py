#!/usr/bin/env python
"""Train b_v with transformers' Trainer instead of beft's loop (beft only picks the biases).

    python examples/hf_trainer.py --model minilm --data $BEFT_DATA_DIR/glue/SST-2 --out runs/hf
    torchrun --nproc_per_node 2 examples/hf_trainer.py --model minilm --data ... --out runs/hf2   # DDP
    accelerate launch --num_processes 2 examples/hf_trainer.py ...                                  # same
    deepspeed --num_gpus 2 examples/hf_trainer.py ... --deepspeed ds_configs/zero2.json      # ZeRO-2

Writes <out>/adapter (beft's format: launch/export.py turns it into peft or a merged checkpoint) and
<out>/peft (loads with peft.PeftModel.from_pretrained(base, <out>/peft)).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
import transformers as tf

from beft.bias import apply_bias
from beft.integrations.hf_trainer import BiasCallback
from beft.models import resolve


def sst2(folder: Path, split: str, n: int | None) -> list[tuple[str, int]]:
    with open(folder / f"{split}.tsv", newline="") as f:
        rows = [
            (r["sentence"], int(r["label"]))
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]
    return rows[:n] if n else rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="short name, local folder or hub id")
    p.add_argument("--data", required=True, help="the SST-2 folder (train.tsv, dev.tsv)")
    p.add_argument("--out", required=True)
    p.add_argument("--bias", default="v")
    p.add_argument("--n_train", type=int, default=1000)
    p.add_argument("--batch_size", type=int, default=32, help="global batch (split over ranks)")
    p.add_argument("--max_steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--max_length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--deepspeed",
        help=(
            "a DeepSpeed JSON config (ZeRO-2: ZeRO-3 partitions the biases "
            "apply_bias adds, which beft's own loop handles and the Trainer does not)"
        ),
    )
    p.add_argument(
        "--local_rank", type=int, default=-1, help=argparse.SUPPRESS
    )  # the deepspeed launcher's
    a = p.parse_args()

    tf.set_seed(a.seed)  # the new head starts the same on every rank and run
    name = resolve(a.model)
    tok = tf.AutoTokenizer.from_pretrained(name)
    model = tf.AutoModelForSequenceClassification.from_pretrained(name, num_labels=2)
    selection = apply_bias(model, a.bias, head=["classifier"])

    rows = sst2(Path(a.data), "train", a.n_train)
    enc = tok([s for s, _ in rows], truncation=True, max_length=a.max_length, padding="max_length")
    data = [
        {"input_ids": torch.tensor(i), "attention_mask": torch.tensor(m), "labels": torch.tensor(y)}
        for i, m, (_, y) in zip(enc["input_ids"], enc["attention_mask"], rows)
    ]
    world = (
        torch.distributed.get_world_size()
        if torch.distributed.is_initialized()
        else int(__import__("os").environ.get("WORLD_SIZE", "1"))
    )
    args = tf.TrainingArguments(
        output_dir=a.out,
        per_device_train_batch_size=a.batch_size // world,
        max_steps=a.max_steps,
        learning_rate=a.lr,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        seed=a.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        # Trainer multiplies the loss by the number of processes for any model
        # whose forward takes **kwargs, as if it were a token sum; a
        # classification loss is a mean, so 2 ranks would see twice the gradient
        # (and clip differently) without this.
        average_tokens_across_devices=False,
        deepspeed=a.deepspeed,
    )
    trainer = tf.Trainer(
        model=model,
        args=args,
        train_dataset=data,
        callbacks=[BiasCallback(selection, peft_dir=str(Path(a.out) / "peft"))],
    )
    trainer.train()


if __name__ == "__main__":
    main()
