"""Export a trained bias selection to peft's BEFT format, or merge it into a standalone checkpoint."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .adapter import adapter_state
from .families import FAMILIES
from .inject import add_zero_bias
from .selection import BiasSelection


class ExportError(ValueError):
    pass


def _atomic_dir(final: Path):
    """Write into <final>.tmp, then rename: a crash never leaves a half-written export."""
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _commit_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _task_type(model: nn.Module) -> str | None:
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForCausalLM"):
        return "CAUSAL_LM"
    return None


def export_peft(directory: str | os.PathLike, selection: BiasSelection, model: nn.Module,
                state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that
    `peft.PeftModel.from_pretrained(base, directory)` loads. peft's BEFT adds a vector to the
    output of each target Linear, so native biases are exported as b_ft - b_0."""
    if selection.extra:
        raise ExportError("peft's BEFT tuner only targets Linear layers; target 'all' also trains "
                          "layer-norm and other biases: use the beft adapter or merge instead")
    from peft import BeftConfig   # optional dependency, imported only here
    tensors = adapter_state(selection, model, state)
    out: dict[str, torch.Tensor] = {}
    for site in selection.sites:
        b = tensors[site.param_name].float()
        b0 = selection.initial.get(site.param_name)
        delta = b if b0 is None or site.added else b - b0.float()
        out[f"base_model.model.{site.name}.beft_bias"] = delta.reshape(1, -1).contiguous()
    head_modules = selection.head_modules
    for n in selection.head:
        out[f"base_model.model.{n}"] = tensors[n].contiguous()
    final = Path(directory)
    tmp = _atomic_dir(final)
    cfg = BeftConfig(target_modules=[s.name for s in selection.sites], modules_to_save=head_modules or None,
                     task_type=_task_type(model),
                     base_model_name_or_path=str(getattr(model.config, "_name_or_path", "") or None))
    cfg.save_pretrained(str(tmp))
    save_file(out, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    _commit_dir(tmp, final)
    return final


def merge_checkpoint(directory: str | os.PathLike, selection: BiasSelection, model: nn.Module,
                     tokenizer=None) -> Path:
    """Write a checkpoint that plain transformers loads without beft, biases included.

    Bias-free families whose config can switch biases on (LLaMA: attention_bias) get the flag and
    zero biases on every projection it covers; families that cannot express biases raise."""
    family = FAMILIES.get(selection.family)
    if selection.added:
        if family is None or family.merge_flag is None:
            raise ExportError(
                f"a {selection.family} model cannot hold the added biases {selection.added[0]!r}... "
                "in its config, so no plain transformers checkpoint can carry them; use the beft "
                "adapter (beft.bias.load_adapter) or export_peft instead")
        setattr(model.config, family.merge_flag, True)
        from .families import find_projections
        for t in family.merge_flag_targets:
            for _, module in find_projections(model, family, t):
                if module.bias is None:
                    add_zero_bias(module, dtype=next(p.dtype for p in selection.bias_parameters().values()))
    final = Path(directory)
    tmp = _atomic_dir(final)
    model.save_pretrained(str(tmp), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    with open(tmp / "beft_merge.json", "w") as f:
        json.dump({"family": selection.family, "targets": selection.targets, "added": selection.added}, f)
    _commit_dir(tmp, final)
    return final
