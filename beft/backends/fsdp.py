"""torch FSDP2 (fully_shard): each transformer block is sharded, then the root."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from . import dist
from .local import LocalBackend, rank_file, read_state, rng_state, set_rng_state, write_state


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks, named by the model's own _no_split_modules."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:  # fall back: the children of the largest ModuleList
        lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
        blocks = list(max(lists, key=len)) if lists else []
    return blocks


def _units(model: nn.Module) -> list[nn.Module]:
    """What is sharded (and gathered) as one piece before the root: each block, and the input and
    output embeddings when untied (LLaMA-2's are 131 M parameters each: left in the root they would
    be gathered whole, together, for the whole forward)."""
    units = _blocks(model)
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    if (
        emb is not None
        and out is not None
        and getattr(out, "weight", None) is getattr(emb, "weight", 0)
    ):
        return units  # tied: one parameter, it stays in the root
    inside = {
        id(m) for b in units for m in b.modules()
    }  # e.g. BERT's word embeddings sit in a block
    return units + [m for m in (emb, out) if m is not None and id(m) not in inside]


class FSDPBackend(LocalBackend):
    kind = "fsdp"
    title = "FSDP2"
    replicated = (
        False  # shards or master copies: in-place edits of the trained tensors do not stick
    )
    shards_parameters = True
    evaluates_alone = False

    def init(self) -> None:
        super().init()
        from torch.distributed.device_mesh import init_device_mesh

        self.mesh = init_device_mesh(self.device.type, (dist.world_size(),))

    def load_model(
        self, name: str, arch: str, *, num_labels: int | None = None, quantization_config=None
    ) -> tuple:
        """Sharded from the first byte: the model is built on the meta device (its head, 1-D
        parameters and buffers real, as from_pretrained would make them); the weights are read in
        prepare(), each rank reading only the rows of the shards it owns."""
        from ..models import build_empty
        from .choose import transformers_builds_every_rank

        self.base_dtype = dist.base_dtype(self.cfg.precision)
        with transformers_builds_every_rank():
            model, tokenizer, head, self.checkpoint, self.keys = build_empty(
                name, arch, num_labels=num_labels, dtype=self.base_dtype
            )
        return model, tokenizer, head

    def prepare(self, model: nn.Module, params: dict[str, torch.Tensor], build_optim) -> dict:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # what exists before sharding (new head, 1-D parameters, added biases, buffers, reparam
        # tensors) is kept aside and sliced after; everything else is read from the checkpoint
        named = [*model.named_parameters(), *model.named_buffers()]
        real = {n: t.detach().clone() for n, t in named if not t.is_meta}
        with torch.no_grad():
            model.to("meta")
            for n, p in model.named_parameters():  # frozen: the base dtype; trained: fp32 values
                if p.dtype.is_floating_point:
                    p.data = p.data.to(torch.float32 if n in params else self.base_dtype)
        kw = {"mesh": self.mesh}
        if self.base_dtype != torch.float32:  # compute in 16 bits, reduce gradients in fp32
            kw["mp_policy"] = MixedPrecisionPolicy(
                param_dtype=self.base_dtype, reduce_dtype=torch.float32
            )
        for unit in _units(model):
            fully_shard(unit, **kw)
        fully_shard(model, **kw)
        model.to_empty(device=self.device)
        self._fill(model, real)
        # fully_shard replaced the parameters by DTensor shards: look them up again by name
        live = dict(model.named_parameters())
        params = {n: live[n] for n in params}
        self.model = model
        self.optimizer, self.scheduler = build_optim(list(params.values()))
        return params

    def _fill(self, model: nn.Module, real: dict[str, torch.Tensor]) -> None:
        """Each rank copies the rows of dim 0 it owns (FSDP2's Shard(0)) into its shards: from the
        tensors kept before sharding, or straight out of the memory-mapped checkpoint."""
        from torch.distributed.tensor import Shard

        from .checkpoint import CheckpointMismatch, shard_rows

        world, rank = dist.world_size(), dist.rank()
        with torch.no_grad():
            for n, p in model.named_parameters():
                rows = None
                if hasattr(p, "to_local"):
                    if tuple(p.placements) != (Shard(0),):
                        raise RuntimeError(
                            f"{n}: FSDP2 placement {p.placements}, expected Shard(0)"
                        )
                    rows = shard_rows(p.shape[0], world, rank)
                if n in real:
                    src = real[n] if rows is None else real[n][rows[0] : rows[1]]
                elif n in self.keys:
                    src = self.checkpoint.read(self.keys[n], rows)
                else:
                    raise CheckpointMismatch(
                        f"{n}: the checkpoint in {self.checkpoint.folder} has no tensor "
                        "for it and nothing created it: the checkpoint does not match "
                        "its config.json"
                    )
                (p.to_local() if rows is not None else p).copy_(src)
            for n, b in model.named_buffers():
                b.copy_(real[n])

    def autocast(self):
        return torch.autocast(self.device.type, enabled=False)  # the MixedPrecisionPolicy casts

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
                        shard = distribute_tensor(
                            f, p.device_mesh, p.placements, src_data_rank=None
                        )
                        p.to_local().copy_(shard.to_local())

        yield full, sync

    def full_state(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for n, p in params.items():
            t = p.detach()
            if hasattr(t, "full_tensor"):
                t = t.full_tensor()  # all-gather of one (small) parameter
            out[n] = t.to("cpu", copy=True)
        return out

    def after_step(self, restore, selection) -> None:
        """Nothing: FSDP2 refuses partially selected fused biases (train.py) except under ZO, whose
        step never moves the unselected entries."""

    def save_checkpoint(self, directory: Path, params, extra: dict) -> None:
        """Per rank: its shards of the trainable parameters and of the optimizer state."""
        local = {
            n: (p.detach().to_local() if hasattr(p, "to_local") else p.detach()).cpu()
            for n, p in params.items()
        }
        opt = self.optimizer.state_dict()
        opt["state"] = {
            k: {
                sk: (
                    (sv.to_local() if hasattr(sv, "to_local") else sv).cpu()
                    if torch.is_tensor(sv)
                    else sv
                )
                for sk, sv in s.items()
            }
            for k, s in opt["state"].items()
        }
        write_state(
            {
                "params": local,
                "optimizer": opt,
                "scheduler": self.scheduler.state_dict(),
                "extra": extra,
                "rng": rng_state(),
                "world_size": dist.world_size(),
            },
            rank_file(directory, "state"),
        )

    def load_checkpoint(self, directory: Path, params) -> dict:
        path = rank_file(directory, "state")
        state = read_state(path)
        if state["world_size"] != dist.world_size():
            raise RuntimeError(
                f"checkpoint {directory} was written by {state['world_size']} ranks; "
                f"resume with the same number (now {dist.world_size()})"
            )
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
                s[sk] = DTensor.from_local(
                    sv.to(p.device), p.device_mesh, p.placements, shape=p.shape, stride=p.stride()
                )
    return saved
