"""Export a trained bias selection to peft's BEFT format, or merge it into a standalone
checkpoint."""

from __future__ import annotations

import copy
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .adapter import ADAPTER_FILE, adapter_state
from .families import detect_family, find_projections
from .inject import add_zero_bias
from .selection import BiasSelection


class ExportError(ValueError):
    pass


# Names that mark a training run (beft/outputs.py RunDir) or a bias adapter folder: an export
# never replaces a folder holding one of them, even with overwrite=true.
RUN_NAMES = (
    "result.json",
    "config.yaml",
    "metrics.jsonl",
    "checkpoints",
    "adapter",
    "adapter_best",
    ADAPTER_FILE,
)
# Written into every export, listing its files: overwrite=true replaces only such a folder.
MARKER = "beft_export.json"


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output(
    directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    sources: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Refuse an output folder whose writing would destroy something: one equal to, inside or
    holding a source folder; an existing path (unless overwrite=true and it is a previous export
    holding only the files that export wrote); a training run or adapter folder, always."""
    final = Path(directory)
    for src in sources:
        if _overlaps(final.resolve(), Path(src).resolve()):
            raise ExportError(
                f"output {final} is, is inside or holds the source {src}; "
                "choose an output path outside it"
            )
    if not final.exists() and not final.is_symlink():
        return final
    if final.is_symlink() or not final.is_dir():
        raise ExportError(f"output {final} already exists and is not a folder; choose another path")
    run = [n for n in RUN_NAMES if (final / n).exists()]
    if run:
        raise ExportError(
            f"output {final} holds a training run or adapter ({run[0]}) and is never "
            "replaced, even with overwrite=true; choose another path"
        )
    if not overwrite:
        raise ExportError(
            f"output {final} already exists; choose another path, or pass overwrite=true "
            "to replace a previous export"
        )
    try:
        wrote = set(json.loads((final / MARKER).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ExportError(
            f"output {final} is not a beft export (no valid {MARKER}); overwrite=true "
            "replaces only a previous export: choose another path"
        ) from None
    extra = sorted(set(os.listdir(final)) - wrote)
    if extra:
        raise ExportError(
            f"output {final} holds files the export did not write ({', '.join(extra[:3])}); "
            "move them out or choose another path"
        )
    return final


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename tmp to final. An existing final is renamed aside first and deleted last, so a crash
    at any point leaves a complete export at final or beside it, never neither."""
    if not final.exists():
        os.rename(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old)


@contextmanager
def _staged(final: Path, kind: str, overwrite: bool, sources: tuple):
    """Yield a fresh temp sibling of `final` to write into; on success list its files in MARKER
    and swap it in. On failure the temp folder goes and `final` is untouched."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        files = sorted(os.listdir(tmp) + [MARKER])
        (tmp / MARKER).write_text(json.dumps({"kind": kind, "files": files}) + "\n")
        check_output(
            final, overwrite=overwrite, sources=sources
        )  # again: it may have changed meanwhile
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _task_type(model: nn.Module) -> str | None:
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForCausalLM"):
        return "CAUSAL_LM"
    return None


def export_peft(
    directory: str | os.PathLike,
    selection: BiasSelection,
    model: nn.Module,
    state: dict[str, torch.Tensor] | None = None,
    *,
    overwrite: bool = False,
    sources: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that
    `peft.PeftModel.from_pretrained(base, directory)` loads. peft's BEFT adds a vector to the
    output of each target Linear, so native biases are exported as b_ft - b_0. The output rules
    (existing paths, overwrite, sources) are check_output's."""
    if selection.extra:
        raise ExportError(
            "peft's BEFT tuner only targets Linear layers; target 'all' also trains "
            "layer-norm and other biases: use the beft adapter or merge instead"
        )
    not_linear = [s for s in selection.sites if not isinstance(s.module, nn.Linear)]
    if not_linear:
        raise ExportError(
            f"peft's BEFT tuner wraps only torch.nn.Linear; {not_linear[0].name} is a "
            f"{type(not_linear[0].module).__name__}: use the beft adapter or merge instead"
        )
    final = check_output(directory, overwrite=overwrite, sources=sources)
    from peft import BeftConfig  # optional dependency, imported only here

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
    cfg = BeftConfig(
        target_modules=[s.name for s in selection.sites],
        modules_to_save=head_modules or None,
        task_type=_task_type(model),
        base_model_name_or_path=str(getattr(model.config, "_name_or_path", "") or None),
    )
    with _staged(final, "peft", overwrite, sources) as tmp:
        cfg.save_pretrained(str(tmp))
        save_file(out, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    return final


def merge_checkpoint(
    directory: str | os.PathLike,
    selection: BiasSelection,
    model: nn.Module,
    tokenizer=None,
    *,
    overwrite: bool = False,
    sources: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write a checkpoint that plain transformers loads without beft, biases included.

    Bias-free families whose config can switch biases on (LLaMA: attention_bias) get the flag and
    zero biases on every projection it covers; families that cannot express biases raise. The
    output rules (existing paths, overwrite, sources) are check_output's."""
    final = check_output(directory, overwrite=overwrite, sources=sources)
    if selection.added:
        _enable_config_biases(selection, model)
    with _staged(final, "merge", overwrite, sources) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        with open(tmp / "beft_merge.json", "w") as f:
            json.dump(
                {
                    "family": selection.family,
                    "targets": selection.targets,
                    "added": selection.added,
                },
                f,
            )
    return final


def _enable_config_biases(selection: BiasSelection, model: nn.Module) -> None:
    """Switch on the config flag that gives the projections biases (LLaMA, Qwen3, ...:
    attention_bias) and add zero biases where the flag creates them, after checking on the meta
    device that the flag gives this model class exactly the biases it will then hold."""
    family = None if selection.family == "custom" else detect_family(model)
    if family is None or family.merge_flag is None:
        raise ExportError(
            f"a {selection.family} model cannot hold the added biases {selection.added[0]!r}... "
            "in its config, so no plain transformers checkpoint can carry them; use the beft "
            "adapter (beft.bias.load_adapter) or export_peft instead"
        )
    to_add = [
        (n, m)
        for t in family.merge_flag_targets
        for n, m in find_projections(model, family, t)
        if m.bias is None
    ]
    ours = {n for n, _ in model.named_parameters() if n.endswith(".bias")} | {
        f"{n}.bias" for n, _ in to_add
    }
    config = copy.deepcopy(model.config)
    setattr(config, family.merge_flag, True)
    with torch.device("meta"):
        theirs = {n for n, _ in type(model)(config).named_parameters() if n.endswith(".bias")}
    if ours != theirs:
        odd = sorted(ours ^ theirs)[0]
        raise ExportError(
            f"{family.merge_flag}=True does not give this {selection.family} model exactly its "
            f"trained biases ({odd!r} differs), so no plain transformers checkpoint can carry "
            "them; use the beft adapter (beft.bias.load_adapter) or export_peft instead"
        )
    setattr(model.config, family.merge_flag, True)
    for _, module in to_add:
        add_zero_bias(module, dtype=next(p.dtype for p in selection.bias_parameters().values()))
