"""Single process (CPU or one GPU, optionally 8-/4-bit base weights): the reference backend."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import torch
from torch import nn

from . import dist


class LocalBackend:
    """Satisfies beft/backends/protocol.py's Backend."""

    kind = "local"
    title = "one process"
    replicated = True  # each rank holds the whole model: the loop may edit trained tensors in place
    shards_parameters = False
    evaluates_alone = True  # a method that only evaluates needs no optimizer

    def __init__(self, cfg):
        self.cfg = cfg
        self.model: nn.Module | None = None
        self.optimizer = None
        self.scheduler = None
        self.base_dtype = torch.float32
        self.device = torch.device("cpu")

    # -- lifecycle -------------------------------------------------------------------------
    def init(self) -> None:
        dist.init(
            self.start_group
        )  # several ranks and nothing asked: beft/backends/choose.py picked ddp
        self.rank, self.world_size, self.device = dist.rank(), dist.world_size(), dist.device()

    def load_model(
        self, name: str, arch: str, *, num_labels: int | None = None, quantization_config=None
    ) -> tuple:
        """(model, tokenizer, head): the frozen base in dist.base_dtype(precision)."""
        from ..models import load_model

        self.base_dtype = dist.base_dtype(self.cfg.precision)
        model, tokenizer, head = load_model(
            name,
            arch,
            num_labels=num_labels,
            dtype=self.base_dtype,
            quantization_config=quantization_config,
        )
        if not (
            getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False)
        ):
            model.to(self.device)
        return model, tokenizer, head

    def prepare(self, model: nn.Module, params: dict[str, torch.Tensor], build_optim) -> dict:
        """Wrap the model, build optimizer + scheduler over the trainable params; return the
        (possibly replaced) trainable parameters by name."""
        keep_fp32(params)
        self.model = model
        self.optimizer, self.scheduler = build_optim(list(params.values()))
        return params

    def autocast(self):
        """A 16-bit base computes in its dtype; the fp32 trained tensors are cast on the fly."""
        if self.base_dtype != torch.float32:
            return torch.autocast(self.device.type, dtype=self.base_dtype)
        return torch.autocast(self.device.type, enabled=False)

    # -- one micro-step ----------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.optim.grad_accum).backward()

    def step(self, params: list[torch.Tensor]) -> float:
        clip = self.cfg.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def shard_report(self) -> dict:
        """Elements of the frozen parameters held by this rank vs their full size: proof of
        sharding."""
        local = full = 0
        for p in self.model.parameters():
            if p.requires_grad:
                continue
            full += int(getattr(p, "ds_numel", p.numel()))
            if hasattr(p, "ds_tensor"):
                local += int(p.ds_tensor.numel())
            elif hasattr(p, "to_local"):
                local += int(p.to_local().numel())
            else:
                local += int(p.numel())
        return {
            "frozen_local_numel": local,
            "frozen_full_numel": full,
            **getattr(self, "load_report", {}),
        }

    def release(self) -> None:
        """After forward-only passes (evaluation, ZO): free what the backend keeps gathered."""

    @contextlib.contextmanager
    def full_access(self, params: list[torch.Tensor]):
        """(full tensors, sync): edit the full tensors in place, then sync() so the model sees
        them."""
        yield params, lambda: None

    @staticmethod
    def start_group() -> None:
        """Start the process group of several ranks (DeepSpeed starts its own)."""
        dist.start_group()

    def fill_initial(self, selection) -> None:
        """b_0 of each trained bias where the local tensors do not hold it (ZeRO-3); here they
        do."""

    def after_step(self, restore, selection) -> None:
        """Run the method's after-step hook (restore the unselected slices of fused biases that
        weight decay moved) after each optimizer step."""
        restore()

    # -- state ---------------------------------------------------------------------------------
    def full_state(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Full (gathered) copies of the named parameters on CPU; every rank must call."""
        return {n: p.detach().to("cpu", copy=True) for n, p in params.items()}

    def save_checkpoint(
        self, directory: Path, params: dict[str, torch.Tensor], extra: dict
    ) -> None:
        state = {
            "params": self.full_state(params),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "extra": extra,
            "rng": rng_state(),
        }
        write_state(state, directory / "state.pt")

    def load_checkpoint(self, directory: Path, params: dict[str, torch.Tensor]) -> dict:
        state = read_state(directory / "state.pt")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state["params"][n].to(p.dtype))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return state["extra"]

    def cleanup(self) -> None:
        dist.destroy()


def keep_fp32(params: dict[str, torch.Tensor]) -> None:
    """Trained tensors hold fp32 values (a 16-bit base loaded them in its dtype): an update of
    lr x grad ~ 1e-5 would vanish in bf16's 8-bit mantissa."""
    for p in params.values():
        if p.dtype.is_floating_point and p.dtype != torch.float32:
            p.data = p.data.float()


def rng_state() -> dict:
    state = {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def rank_file(directory: Path, stem: str) -> Path:
    return directory / f"{stem}_rank{dist.rank()}.pt"


class CheckpointCorrupt(ValueError):
    """A resume checkpoint file that cannot be read (truncated, damaged, missing)."""


def unreadable(path: Path, e: BaseException) -> CheckpointCorrupt:
    what = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
    return CheckpointCorrupt(
        f"checkpoint file {path} is truncated or damaged ({what}); delete "
        f"{path.parent} to restart the run from its first step, or restore it"
    )


def write_state(state: dict, path: Path) -> None:
    """torch.save, a full disk named (outputs.disk_full_names)."""
    from ..outputs import disk_full_names

    with disk_full_names(path):
        torch.save(state, path)


def read_state(path: Path) -> dict:
    """torch.load(weights_only=True) of a checkpoint file; an unreadable file is one line naming it
    (torch says "failed finding central directory", "[Errno 22] Invalid argument" or nothing)."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise unreadable(path, e) from None
