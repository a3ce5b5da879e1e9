"""torch FSDP2 (fully_shard): each transformer block is sharded, then the root."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from . import dist
from .local import LocalBackend, rank_file, rng_state, set_rng_state


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks, named by the model's own _no_split_modules."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:   # fall back: the children of the largest ModuleList
        lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
        blocks = list(max(lists, key=len)) if lists else []
    return blocks


class FSDPBackend(LocalBackend):
    name = "fsdp"

    def init(self) -> None:
        super().init()
        from torch.distributed.device_mesh import init_device_mesh
        self.mesh = init_device_mesh(self.device.type, (dist.world_size(),))

    def load_model(self, load):
        model, tokenizer, head = load()
        return model, tokenizer, head     # sharded in prepare(), after the biases are selected

    def prepare(self, model: nn.Module, params: dict[str, torch.Tensor], build_optim) -> dict:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        model.to(self.device)
        kw = {"mesh": self.mesh}
        dtype = dist.half_dtype(self.cfg.precision) if self.device.type == "cuda" else None
        if dtype is not None:
            kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        for block in _blocks(model):
            fully_shard(block, **kw)
        fully_shard(model, **kw)
        # fully_shard replaced the parameters by DTensor shards: look them up again by name
        live = dict(model.named_parameters())
        params = {n: live[n] for n in params}
        self.model = model
        self.optimizer, self.scheduler = build_optim(list(params.values()))
        return params

    def autocast(self):
        return torch.autocast(self.device.type, enabled=False)   # the MixedPrecisionPolicy casts

    def release(self) -> None:
        """The root's parameters (embeddings, LM head) stay unsharded after its forward: FSDP2
        expects a backward to follow. Forward-only work (evaluation, ZO) reshards them here."""
        self.model.reshard()

    @contextlib.contextmanager
    def full_access(self, params):
        """Gather each DTensor; sync() writes this rank's shard of the edited full copy back."""
        from torch.distributed.tensor import distribute_tensor
        full = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in params]

        def sync() -> None:
            with torch.no_grad():
                for p, f in zip(params, full):
                    if hasattr(p, "to_local"):
                        shard = distribute_tensor(f, p.device_mesh, p.placements, src_data_rank=None)
                        p.to_local().copy_(shard.to_local())
        yield full, sync

    def full_state(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for n, p in params.items():
            t = p.detach()
            if hasattr(t, "full_tensor"):
                t = t.full_tensor()           # all-gather of one (small) parameter
            out[n] = t.to("cpu", copy=True)
        return out

    def save_checkpoint(self, directory: Path, params, extra: dict) -> None:
        """Per rank: its shards of the trainable parameters and of the optimizer state."""
        local = {n: (p.detach().to_local() if hasattr(p, "to_local") else p.detach()).cpu() for n, p in params.items()}
        opt = self.optimizer.state_dict()
        opt["state"] = {k: {sk: (sv.to_local() if hasattr(sv, "to_local") else sv).cpu() if torch.is_tensor(sv) else sv
                            for sk, sv in s.items()} for k, s in opt["state"].items()}
        torch.save({"params": local, "optimizer": opt, "scheduler": self.scheduler.state_dict(),
                    "extra": extra, "rng": rng_state(), "world_size": dist.world_size()},
                   rank_file(directory, "state"))

    def load_checkpoint(self, directory: Path, params) -> dict:
        path = rank_file(directory, "state")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["world_size"] != dist.world_size():
            raise RuntimeError(f"checkpoint {directory} was written by {state['world_size']} ranks; "
                               f"resume with the same number (now {dist.world_size()})")
        with torch.no_grad():
            for n, p in params.items():
                (p.to_local() if hasattr(p, "to_local") else p).copy_(state["params"][n])
        self.optimizer.load_state_dict(_as_dtensor_state(state["optimizer"], self.optimizer))
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return state["extra"]


def _as_dtensor_state(saved: dict, optimizer) -> dict:
    from torch.distributed.tensor import DTensor
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for k, s in saved["state"].items():
        p = params[int(k)]
        for sk, sv in list(s.items()):
            if torch.is_tensor(sv) and isinstance(p, DTensor) and sv.dim() > 0:
                s[sk] = DTensor.from_local(sv.to(p.device), p.device_mesh, p.placements,
                                           shape=p.shape, stride=p.stride())
    return saved
