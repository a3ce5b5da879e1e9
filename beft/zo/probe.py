"""Linear probing of a new task head before forward-only (ZO) training of the biases: where the
head is, and its inputs over the training set.

A randomly initialised head makes the ZO estimate of the bias gradient mostly noise (the loss is
dominated by the head), so the head is fitted first on frozen features: one no-grad pass over the
training set records the head module's input, then full-batch AdamW steps fit the head on those
cached inputs (beft/zo/head.py, milliseconds for a linear head). The pass costs about one
evaluation of the training set; its time is reported so that equal-time comparisons count it.
"""

from __future__ import annotations

import torch
from torch import nn


def head_root(head: list[str]) -> str:
    """The name of the one module holding every new head tensor (BERT / RoBERTa `classifier`)."""
    roots = {h.split(".")[0] for h in head}
    if len(roots) != 1:
        raise ValueError(
            "a first-order or probed head must be one module; the new tensors are under"
            f" {sorted(roots)}"
        )
    return roots.pop()


def head_module(model: nn.Module, head: list[str]) -> nn.Module:
    return model.get_submodule(head_root(head))


@torch.no_grad()
def head_inputs(
    model: nn.Module, module: nn.Module, batches, logits
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(inputs of `module`, labels) per batch: `logits(model, batch)` runs the model. Kept per
    batch:
    heads that take the whole sequence (RoBERTa, ELECTRA: (B, T, H)) see a different T in every
    batch (each is padded to its own longest example)."""
    seen: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    labels = []
    was = model.training
    model.eval()
    try:
        for batch in batches:
            logits(model, batch)
            labels.append(batch["labels"])
    finally:
        hook.remove()
        model.train(was)
    return seen, labels
