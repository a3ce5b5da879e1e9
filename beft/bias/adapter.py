"""Bias adapters: the trained biases (and task head) as one small safetensors file + metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .. import __version__
from .families import detect_family
from .inject import apply_bias
from .selection import BiasSelection

ADAPTER_FILE = "adapter.safetensors"


class AdapterMismatchError(ValueError):
    pass


def _base_name(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")


def adapter_state(
    selection: BiasSelection,
    model: nn.Module | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Trainable tensors keyed by parameter name, detached on CPU. Pass `state` (full gathered
    tensors) where the model's own parameters are sharded (ZeRO-3, FSDP)."""
    names = list(selection.trainable_parameters())
    if state is None:
        state = {n: p.detach() for n, p in selection.trainable_parameters().items()}
    missing = [n for n in names if n not in state]
    if missing:
        raise KeyError(f"adapter state lacks {missing[:3]}")
    return {n: state[n].detach().to("cpu").contiguous().clone() for n in names}


def save_adapter(
    directory: str | os.PathLike,
    selection: BiasSelection,
    model: nn.Module,
    state: dict[str, torch.Tensor] | None = None,
    extra_meta: dict | None = None,
) -> Path:
    """Write <directory>/adapter.safetensors atomically (tmp file + rename)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = adapter_state(selection, model, state)
    meta = {
        "format": "beft-bias-adapter",
        "beft_version": __version__,
        "base_model": _base_name(model),
        "model_type": str(getattr(model.config, "model_type", "")),
        "architecture": type(model).__name__,
        "family": selection.family,
        "targets": selection.targets,
        "shapes": {n: list(t.shape) for n, t in tensors.items()},
        "added": selection.added,
        "head": selection.head_modules,
        "fused": {s.param_name: s.index.tolist() for s in selection.sites if s.partial},
        **(extra_meta or {}),
    }
    tmp = d / (ADAPTER_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"beft": json.dumps(meta)})
    os.replace(tmp, d / ADAPTER_FILE)
    return d / ADAPTER_FILE


def read_adapter(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    p = Path(path)
    if p.is_dir():
        p = p / ADAPTER_FILE
    if not p.is_file():
        raise FileNotFoundError(
            f"no bias adapter at {p} (expected a directory holding {ADAPTER_FILE})"
        )
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("beft")
            if raw is None:
                raise AdapterMismatchError(f"{p} is not a beft bias adapter (no 'beft' metadata)")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise AdapterMismatchError(
            f"{p} is truncated or corrupt ({e}); copy it again or re-run the training that wrote it"
        ) from None
    return tensors, _check_meta(p, raw, tensors)


# written by every save_adapter; the readers (load_adapter, launch/export.py) rely on them
REQUIRED_META = {
    "family": str,
    "targets": (list, str),
    "shapes": dict,
    "architecture": str,
    "base_model": str,
}


def _check_meta(p: Path, raw: str, tensors: dict[str, torch.Tensor]) -> dict:
    """The 'beft' metadata of adapter file p, parsed and checked against its tensors."""
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise AdapterMismatchError(
            f"{p}: its 'beft' metadata is not JSON ({e}); the file was edited "
            "or damaged: re-run the training that wrote it"
        ) from None
    if not isinstance(meta, dict):
        raise AdapterMismatchError(
            f"{p}: its 'beft' metadata is not a JSON object; re-run the training that wrote it"
        )
    for key, kind in REQUIRED_META.items():
        if not isinstance(meta.get(key), kind):
            raise AdapterMismatchError(
                f"{p}: its 'beft' metadata lacks a valid {key!r}; the file was edited "
                "or written by another tool: re-run the training that wrote it"
            )
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    recorded = {n: tuple(s) if isinstance(s, list) else s for n, s in meta["shapes"].items()}
    if recorded != shapes:
        bad = sorted(set(recorded) ^ set(shapes)) or sorted(
            n for n in shapes if recorded[n] != shapes[n]
        )
        raise AdapterMismatchError(
            f"{p}: its metadata records shape {recorded.get(bad[0])} for {bad[0]!r} but "
            f"the file holds {shapes.get(bad[0])}; the file was edited or damaged: "
            "re-run the training that wrote it"
        )
    return meta


def load_adapter(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    patterns: dict[str, str] | None = None,
    trainable: bool = False,
) -> BiasSelection:
    """Apply an adapter's targets to a fresh base model and copy its tensors in.

    Fails with AdapterMismatchError if the model is of another family or shape."""
    tensors, meta = read_adapter(path)
    family = detect_family(model, patterns).name
    if family != meta["family"]:
        raise AdapterMismatchError(
            f"adapter was trained on a {meta['family']} model "
            f"({meta['base_model'] or 'unknown base'}); this model is {family}"
        )
    selection = apply_bias(model, meta["targets"], patterns=patterns, head=meta.get("head", []))
    params = selection.trainable_parameters()
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise AdapterMismatchError(
            f"adapter holds {unknown[0]!r} (and {len(unknown) - 1} more) which "
            "this model does not have: another architecture or layer count"
        )
    for name, t in tensors.items():
        p = params[name]
        if tuple(p.shape) != tuple(t.shape):
            raise AdapterMismatchError(
                f"{name}: adapter shape {tuple(t.shape)} != model shape "
                f"{tuple(p.shape)}; the adapter was trained on another model size"
            )
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise AdapterMismatchError(
            f"model has {missing[0]!r} but the adapter does not: another layer count"
        )
    with torch.no_grad():
        for name, t in tensors.items():
            params[name].copy_(t.to(params[name].dtype))
    if meta.get("id2label"):  # own data's class names: a merged checkpoint's config carries them
        model.config.id2label = {int(i): name for i, name in meta["id2label"].items()}
        model.config.label2id = {name: int(i) for i, name in meta["id2label"].items()}
    if not trainable:
        for p in params.values():
            p.requires_grad_(False)
    return selection
