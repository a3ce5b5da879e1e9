"""The learning-rate schedule and the AdamW optimizer a backend builds over the trained tensors."""

from __future__ import annotations

import torch


def lr_lambda(total: int, warmup: int, schedule: str):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def optimizer_builder(cfg, lr: float, lr_fn):
    """build_optim(params) -> (AdamW, LambdaLR), for backend.prepare (under ZO: the new head
    only)."""

    def build_optim(params: list[torch.Tensor]):
        opt = torch.optim.AdamW(
            params,
            lr=lr,
            betas=cfg.optim.betas,
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_fn)

    return build_optim
