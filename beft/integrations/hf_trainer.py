"""beft's biases trained by transformers' Trainer (one process, DDP under torchrun / accelerate,
DeepSpeed ZeRO-2 with TrainingArguments(deepspeed=...); tested: 2 ranks train what 1 process
trains).

    sel = apply_bias(model, "v", head=["classifier"])     # freezes the rest, adds zero biases
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[BiasCallback(sel)])
    trainer.train()     # -> <output_dir>/adapter (beft) and, with peft_dir, a peft folder

The Trainer builds its optimizer over the parameters that require grad, which apply_bias left to
the selected biases and the head. What this callback adds: the unselected entries of a fused qkv
bias are put back after every optimizer step (their gradient is masked by apply_bias, but weight
decay would move them), and the adapter is written by the main process at each Trainer
checkpoint (checkpoint-N/adapter) and at the end. What only beft's own loop gives: exact resume of
the data order and RNG, ZeRO-3 / FSDP2 sharded loading, forward-only training, sweeps
(docs/usage.md)."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from beft.bias.adapter import save_adapter
from beft.bias.selection import BiasSelection


class BiasCallback(TrainerCallback):
    def __init__(self, selection: BiasSelection, peft_dir: str | None = None):
        self.selection = selection
        self.peft_dir = peft_dir

    def on_train_begin(self, args, state, control, **kwargs):
        from transformers.integrations import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled():
            raise ValueError(
                "BiasCallback: DeepSpeed ZeRO-3 partitions the model, including the biases "
                "apply_bias added, and the Trainer does not gather them; use ZeRO-2 here, or "
                "beft's own loop for ZeRO-3 (beft train --config ds_configs/zero3.json)"
            )

    def on_step_end(self, args, state, control, **kwargs):
        self.selection.restore_frozen_slices()

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self._save(Path(args.output_dir) / f"checkpoint-{state.global_step}" / "adapter", model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self._save(Path(args.output_dir) / "adapter", model)
        if self.peft_dir:
            from beft.bias.export import export_peft

            export_peft(self.peft_dir, self.selection, _unwrap(model))

    def _save(self, directory: Path, model) -> None:
        save_adapter(directory, self.selection, _unwrap(model))


def _unwrap(model):
    """The model the selection was made on (Trainer hands callbacks its DDP wrapper)."""
    return getattr(model, "module", model)
