"""Rank and world-size logic: the one place that reads launcher environment variables."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Callable

import torch
import torch.distributed as dist


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def device() -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def half_dtype(precision: str) -> torch.dtype | None:
    """The 16-bit compute dtype of a GPU run, or None (fp32). precision=auto: bf16 where the GPU has
    it natively (Ampere and later); V100 / T4 only emulate it (slowly), so they stay in fp32."""
    if not torch.cuda.is_available() or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else None
    return torch.float16 if precision == "fp16" else torch.bfloat16


def check_precision(precision: str) -> None:
    """precision=bf16 on a GPU without native bfloat16 (V100, T4: compute capability < 8.0) would
    run emulated, several times slower, or fail inside a kernel: say so before anything loads."""
    if (
        precision == "bf16"
        and torch.cuda.is_available()
        and not torch.cuda.is_bf16_supported(including_emulation=False)
    ):
        major, minor = torch.cuda.get_device_capability()
        raise ValueError(
            f"precision=bf16: this GPU ({torch.cuda.get_device_name()}, compute capability "
            f"{major}.{minor}) has no native bfloat16 (needs 8.0+); use precision=fp32, or fp16 "
            "under DeepSpeed (which scales the loss)"
        )


def base_dtype(precision: str) -> torch.dtype:
    """The dtype of the frozen base weights. A frozen weight needs no fp32 copy: precision=bf16 /
    fp16
    loads it in 16 bits on any device (the CPU too); auto does so where the GPU has a native half
    type
    (see half_dtype). Trained tensors keep fp32 values whatever this says."""
    check_precision(precision)
    if precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    return half_dtype(precision) or torch.float32


def comm_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


TIMEOUT = timedelta(minutes=30)


def start_group() -> None:
    dist.init_process_group(comm_backend(), timeout=TIMEOUT)


def init(start: Callable[[], None] = start_group) -> None:
    """Start the process group with `start` (if launched with several ranks; the backend says how)
    and check the launcher agrees."""
    want = env_world_size()
    if want > 1 and not dist.is_initialized():
        start()
    have = dist.get_world_size() if dist.is_initialized() else 1
    if have != want:
        raise RuntimeError(
            f"the launcher started {want} processes but the process group has {have}: each rank"
            " would train alone (accelerate's FSDP on CPU does this); launch with torchrun or"
            " deepspeed"
        )


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean(value: float) -> float:
    """Average a Python float over ranks."""
    return mean_and_any(value, False)[0]


def mean_and_any(value: float, flag: bool) -> tuple[float, bool]:
    """Average a float and OR a flag over ranks in one all-reduce."""
    if not dist.is_initialized():
        return value, flag
    t = torch.tensor(
        [value, float(flag)],
        dtype=torch.float64,
        device=device() if comm_backend() == "nccl" else "cpu",
    )
    dist.all_reduce(t)
    return t[0].item() / dist.get_world_size(), t[1].item() > 0


def sum_tensors(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Element-wise sums over ranks (float32, on the CPU): one all-reduce of the flattened
    tensors."""
    tensors = [t.detach().float().cpu() for t in tensors]
    if not dist.is_initialized() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    flat = flat.to(device()) if comm_backend() == "nccl" else flat
    dist.all_reduce(flat)
    return [x.view_as(t) for x, t in zip(flat.cpu().split([t.numel() for t in tensors]), tensors)]


def broadcast_object(obj):
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
