"""Frozen 16-bit Linear layers on the CPU: the input gradient in a layout the CPU computes fast.

PyTorch's CPU bf16 / fp16 matmul is fast when the weight is the transposed operand (the forward,
x @ W.T) and falls to a slow kernel for the input gradient g @ W. Measured on this project's 2-core
AVX2 box (torch 2.13.0+cpu, one thread, 32 tokens, LLaMA-2-7B's 11008 x 4096 MLP weight in bf16):
x @ W.T 0.29 s, g @ W 12.9 s; one bf16 decoder layer's backward took 62 s against its forward's
1.3 s, so a bf16 base (the only way a 7B model fits two ranks in 24 GB) trained 40x slower than it
computes. Here a frozen 16-bit weight's input gradient is summed in fp32 over blocks of its rows
(0.2 s; 16-bit products are exact in fp32, the sum is rounded once to 16 bits at the end; no fp32
copy of the whole weight). GPUs, fp32
weights, trained weights and no-grad passes take torch's own path unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HALF = (torch.bfloat16, torch.float16)
ROWS = 1024  # rows of the weight upcast at a time: 1024 x 11008 x 4 bytes = 45 MB at 7B


class _FrozenHalfLinear(torch.autograd.Function):
    """y = x W^T + b with W frozen: the forward is torch's; the backward gives x and b only."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_b = None
        if ctx.needs_input_grad[0]:
            acc = torch.zeros(flat.shape[0], weight.shape[1], dtype=torch.float32)
            for i in range(0, weight.shape[0], ROWS):
                acc.addmm_(flat[:, i : i + ROWS].float(), weight[i : i + ROWS].float())
            grad_x = acc.to(grad.dtype).reshape(*grad.shape[:-1], weight.shape[1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat.float().sum(0).to(grad.dtype)
        return grad_x, None, grad_b


class FrozenHalfLinear(nn.Linear):
    """An nn.Linear whose frozen 16-bit CPU weight back-propagates through _FrozenHalfLinear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (
            w.dtype in HALF
            and w.device.type == "cpu"
            and not w.requires_grad
            and torch.is_grad_enabled()
        ):
            return _FrozenHalfLinear.apply(x, w, self.bias)
        return F.linear(x, w, self.bias)


def install(model: nn.Module) -> nn.Module:
    """Give every plain nn.Linear of `model` the fast CPU backward (in place; the weights, names,
    state dict and isinstance checks are unchanged; quantized and other subclasses are left)."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = FrozenHalfLinear
    return model
