"""DeepSpeed ZeRO-2 / ZeRO-3 (optionally CPU offload): the only module importing deepspeed."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
from pathlib import Path

import torch

from . import dist
from .ds_config import check_launcher, fill, read, zero_stage
from .local import (
    LocalBackend,
    rank_file,
    read_state,
    rng_state,
    set_rng_state,
    unreadable,
    write_state,
)


def unlink_cpu_allreduce_buffer() -> None:
    """DeepSpeed's CPU all-reduce maps a shared-memory buffer per rank (/dev/shm/
    deepspeed_allreduce_buffer_*_ADDR_PORT_RANK, 66 MB here) and never unlinks it: every CPU run
    left its ranks' buffers in RAM (312 of them, 21 GB, had piled up on this machine). This rank
    removes its own name; mappings already open (every rank maps every buffer when DeepSpeed's
    communication starts) stay valid until unmapped, so it is safe once all ranks are past that."""
    addr, port, rank = (os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK"))
    if not (addr and port and rank):
        return
    for f in glob.glob(f"/dev/shm/deepspeed_allreduce_buffer_*_{addr}_{port}_{rank}"):
        with contextlib.suppress(OSError):
            os.unlink(f)


class DeepSpeedBackend(LocalBackend):
    kind = "deepspeed"
    replicated = (
        False  # shards or master copies: in-place edits of the trained tensors do not stick
    )
    evaluates_alone = False
    stage = 0  # the ZeRO stage, read from the JSON in load_model

    @property
    def title(self) -> str:
        return f"DeepSpeed ZeRO-{self.stage}" if self.stage else "DeepSpeed"

    @property
    def shards_parameters(self) -> bool:
        return self.stage == 3

    @staticmethod
    def start_group() -> None:
        import deepspeed

        deepspeed.init_distributed(dist_backend=dist.comm_backend(), timeout=dist.TIMEOUT)

    def init(self) -> None:
        check_launcher(self.cfg.deepspeed_config)
        read(self.cfg.deepspeed_config)  # a bad file is reported before the data and model load
        import deepspeed  # noqa: F401  (fail early when missing)

        super().init()
        atexit.register(unlink_cpu_allreduce_buffer)

    def load_model(
        self, name: str, arch: str, *, num_labels: int | None = None, quantization_config=None
    ) -> tuple:
        from transformers import AutoConfig
        from transformers.integrations import HfDeepSpeedConfig

        from ..models import build_empty, load_model, resolve

        mcfg = AutoConfig.from_pretrained(resolve(name))
        hidden = getattr(mcfg, "hidden_size", None) or getattr(mcfg, "n_embd", None)
        self.ds_config = fill(self.cfg.deepspeed_config, self.cfg, dist.world_size(), hidden)
        self.stage = zero_stage(self.ds_config)
        self.base_dtype = (
            torch.bfloat16
            if self.ds_config.get("bf16", {}).get("enabled")
            else torch.float16 if self.ds_config.get("fp16", {}).get("enabled") else torch.float32
        )
        # Kept alive: while it exists, transformers builds the model under zero.Init, so ZeRO-3
        # partitions the weights as each layer is created (no full copy per rank).
        self._hf_ds = HfDeepSpeedConfig(self.ds_config)
        if self.stage == 3 and quantization_config is None:
            # not from_pretrained: under ZeRO-3 it reads every checkpoint file whole into rank 0's
            # memory before partitioning; here each tensor is gathered and filled one at a time
            model, tokenizer, head, ckpt, keys = build_empty(
                name, arch, num_labels=num_labels, dtype=self.base_dtype
            )
            self._fill_partitioned(model, ckpt, keys)
        else:
            model, tokenizer, head = load_model(
                name,
                arch,
                num_labels=num_labels,
                dtype=self.base_dtype,
                quantization_config=quantization_config,
            )
        # proof that ZeRO-3 never held a full copy: right after loading, before any bias is
        # added, every weight is a ZeRO parameter whose local shard is about 1/world of it
        local = sum(
            int(p.ds_tensor.numel()) if hasattr(p, "ds_tensor") else p.numel()
            for p in model.parameters()
        )
        full = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())
        self.load_report = {"loaded_local_numel": local, "loaded_full_numel": full}
        return model, tokenizer, head

    @staticmethod
    def _fill_partitioned(model, ckpt, keys: dict[str, str]) -> None:
        """Rank 0 copies each checkpoint tensor, read out of the memory-mapped file, into the
        gathered
        parameter; leaving the context re-partitions it. A rank holds its partition plus one tensor.
        """
        import deepspeed

        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in keys and hasattr(p, "ds_id"):
                    with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
                        if dist.rank() == 0:
                            p.data.copy_(ckpt.read(keys[n]))

    def prepare(self, model, params: dict[str, torch.Tensor], build_optim) -> dict:
        import deepspeed

        self.forward_only = self.cfg.optim.kind == "zo"
        if self.forward_only:
            # ZO: no DeepSpeed optimizer (it would keep fp32 copies that in-place ZO updates
            # bypass);
            # ZeRO-3 still partitions every weight and gathers it for the forward (ZeRO-Inference).
            engine, *_ = deepspeed.initialize(model=model, config=self.ds_config)
            self.model, self.engine, self.optimizer, self.scheduler = engine, engine, None, None
        else:
            optimizer, scheduler = build_optim(list(params.values()))
            engine, opt, _, sched = deepspeed.initialize(
                model=model,
                model_parameters=list(params.values()),
                optimizer=optimizer,
                lr_scheduler=scheduler,
                config=self.ds_config,
            )
            self.model, self.optimizer, self.scheduler, self.engine = engine, opt, sched, engine
        # every rank has mapped every CPU all-reduce buffer by now: drop the names at once, so a run
        # killed later (SIGKILL, OOM) leaves nothing in /dev/shm either (atexit covers earlier
        # exits)
        dist.barrier()
        unlink_cpu_allreduce_buffer()
        return params

    def autocast(self):
        return contextlib.nullcontext()  # DeepSpeed casts the model itself (bf16/fp16 sections)

    def backward(self, loss: torch.Tensor) -> None:
        # DeepSpeed counts micro-steps: backward then step on every micro-batch; it scales the
        # loss by 1/gradient_accumulation_steps and only updates at the boundary.
        self.engine.backward(loss)
        self.engine.step()

    def step(self, params) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def after_step(self, restore, selection) -> None:
        """ZeRO-2: restore the model's unselected fused-bias slices, and the same entries of the
        optimizer's fp32 master copy (DeepSpeed copies it over the model at the next step: restoring
        the model alone, weight decay would still move them). ZeRO-3 refuses partial fused biases
        (train.py) except under ZO, whose step never moves the unselected entries."""
        if self.stage == 3:
            return
        restore()
        if self.forward_only or selection is None:
            return
        from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

        for param, idx, values in selection.frozen_slices:
            if values is None:  # a ZeRO-3 partition (never here)
                continue
            master = safe_get_full_fp32_param(param)  # every rank calls: an all-reduce of one bias
            master[idx.to(master.device)] = values.to(master.device, master.dtype)
            safe_set_full_fp32_param(param, master)

    def gathered(self, params: list[torch.Tensor]):
        if self.stage == 3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
        return contextlib.nullcontext()

    def full_state(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with self.gathered(list(params.values())):
            return {
                n: p.detach().to("cpu", dtype=torch.float32, copy=True) for n, p in params.items()
            }

    @contextlib.contextmanager
    def full_access(self, params: list[torch.Tensor]):
        """(full copies, sync) for ZO: sync() writes the edited copies into the (partitioned)
        parameters; every rank holds the same values, rank 0's are the ones re-partitioned."""
        if self.stage != 3:
            yield params, lambda: None
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            full = [p.detach().clone() for p in params]

        def sync() -> None:
            with deepspeed.zero.GatheredParameters(params, modifier_rank=0), torch.no_grad():
                for p, f in zip(params, full):
                    p.data.copy_(f)

        yield full, sync

    def fill_initial(self, selection) -> None:
        """b_0 of each trained bias, gathered (under ZeRO-3 the local tensors are empty)."""
        if self.stage == 3:
            selection.initial = self.full_state(selection.bias_parameters())

    def save_checkpoint(self, directory: Path, params, extra: dict) -> None:
        if self.forward_only:  # ZO: the trained values (gathered) and the loop state, no optimizer
            full = self.full_state(params)
            if dist.rank() == 0:
                write_state({"params": full, "extra": extra}, directory / "state.pt")
            write_state(rng_state(), rank_file(directory, "rng"))
            return
        self.engine.save_checkpoint(
            str(directory),
            tag="state",
            client_state={"extra": extra},
            exclude_frozen_parameters=True,
        )
        write_state(rng_state(), rank_file(directory, "rng"))

    def load_checkpoint(self, directory: Path, params) -> dict:
        if self.forward_only:
            state = read_state(directory / "state.pt")
            with self.full_access(list(params.values())) as (full, sync):
                for f, n in zip(full, params):
                    f.copy_(state["params"][n].to(f.dtype))
                sync()
            set_rng_state(read_state(rank_file(directory, "rng")))
            return state["extra"]
        try:
            _, client = self.engine.load_checkpoint(
                str(directory),
                tag="state",
                load_module_strict=False,
                load_optimizer_states=True,
                load_lr_scheduler_states=True,
            )
        except (RuntimeError, EOFError, OSError) as e:  # DeepSpeed's own torch.load of its files
            if isinstance(e, RuntimeError) and "PytorchStreamReader" not in str(e):
                raise
            raise unreadable(directory / "state", e) from None
        if client is None:
            raise RuntimeError(f"could not load the DeepSpeed checkpoint in {directory}")
        set_rng_state(read_state(rank_file(directory, "rng")))
        return client["extra"]
