"""Linear probing of a new task head before forward-only (ZO) training of the biases.

A randomly initialised head makes the ZO estimate of the bias gradient mostly noise (the loss is
dominated by the head), so the head is fitted first on frozen features: one no-grad pass over the
training set records the head module's input, then `steps` full-batch AdamW steps fit the head on
those cached inputs (milliseconds for a linear head). The pass costs about one evaluation of the
training set; its time is reported so that equal-time comparisons can count it.
"""
from __future__ import annotations

import time

import torch
from torch import nn


def head_module(model: nn.Module, head: list[str]) -> nn.Module:
    """The one module holding every new head tensor (BERT `classifier`, RoBERTa `classifier`)."""
    roots = {h.split(".")[0] for h in head}
    if len(roots) != 1:
        raise ValueError(f"zo.probe=true needs one head module; the new tensors are under {sorted(roots)}")
    return model.get_submodule(roots.pop())


@torch.no_grad()
def head_inputs(model: nn.Module, module: nn.Module, batches, logits) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs of `module` over all batches, their labels): `logits(model, batch)` runs the model."""
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
    return torch.cat(seen), torch.cat(labels)


def fit_head(module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, steps: int, lr: float) -> dict:
    """Full-batch AdamW on the cached inputs; the module in eval mode (no dropout)."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    was = module.training
    module.eval()
    with torch.enable_grad():
        first = None
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(x), y)
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
    with torch.no_grad():
        final = loss_fn(module(x), y).item()
    module.train(was)
    for p in params:
        p.grad = None
    return {"loss_before": first, "loss_after": final, "steps": steps, "examples": int(x.shape[0])}


def probe(model: nn.Module, head: list[str], batches, logits, loss_fn, steps: int, lr: float) -> dict:
    t = time.perf_counter()
    module = head_module(model, head)
    x, y = head_inputs(model, module, batches, logits)
    report = fit_head(module, x, y, loss_fn, steps, lr)
    report["seconds"] = time.perf_counter() - t
    return report
