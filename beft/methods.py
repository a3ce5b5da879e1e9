"""What trains: each `method` of the config turns a loaded model into a set of trainable
parameters. The training loop only sees a MethodSetup; new methods register here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .bias import apply_bias, parse_targets
from .bias.selection import BiasSelection, in_head, numel
from .config import REPARAM_METHODS as REPARAM
from .counts import Counts


@dataclass
class MethodSetup:
    params: dict[str, torch.Tensor]  # what the optimizer updates, by name
    trainable: Counts  # how many parameters train (result.json's "trainable")
    selection: BiasSelection | None = None  # set when the result is a bias adapter
    after_step: Callable[[], None] | None = None  # e.g. restore frozen fused slices (1 process)
    trains: bool = True  # False: evaluation only (zero-shot, ICL)
    notes: list[str] = field(default_factory=list)
    model: nn.Module | None = None  # set when the method wraps the model (peft prefix)
    adapter_state: Callable[[dict], dict] | None = None  # trainable state -> bias adapter tensors
    task_transform: Callable | None = None  # (task, splits) -> task, e.g. ICL demonstrations


def _full(model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    for p in model.parameters():
        p.requires_grad_(True)
    total = sum(numel(p) for p in model.parameters())
    return MethodSetup(dict(model.named_parameters()), Counts(total, trainable=total))


def _bias(model: nn.Module, cfg, head: list[str], targets: str | None = None) -> MethodSetup:
    sel = apply_bias(model, targets or cfg.bias, patterns=cfg.bias_patterns or None, head=head)
    if cfg.quant != "none":
        from .backends import quant

        quant.zero_added_biases(sel)
    return MethodSetup(
        sel.trainable_parameters(),
        sel.counts(model),
        selection=sel,
        after_step=sel.restore_frozen_slices if sel.frozen_slices else None,
    )


def _local_only(cfg, name: str) -> None:
    if cfg.backend != "local":
        raise ValueError(
            f"method={name} runs on one process (backend=local); it is not wired to "
            f"{cfg.backend} yet"
        )


def _reparam(kind: str):
    """Train the bias delta of cfg.bias through a reparametrisation (beft/reparam)."""

    def build(model: nn.Module, cfg, head: list[str], read_full=None) -> MethodSetup:
        from .reparam import apply_reparam

        total = sum(numel(p) for p in model.parameters())
        sel = apply_bias(model, cfg.bias, patterns=cfg.bias_patterns or None, head=head)
        rp = apply_reparam(model, sel, kind, cfg.reparam, read_full=read_full)
        return MethodSetup(
            {**rp.params, **sel.head},
            rp.counts(total),
            selection=sel,
            adapter_state=rp.effective_biases,
        )

    return build


def _rand_uniform(model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    """As many bias entries as cfg.bias has, drawn uniformly (seeded) over every bias of the
    model (BitFit's pool, added q/k/v/o biases included); a gradient mask trains only those,
    and the others are restored after each step (weight decay cannot move them)."""
    _local_only(cfg, "rand_uniform")
    from .bias.detect import out_features
    from .bias.families import detect_family, find_projections

    fam = detect_family(model, cfg.bias_patterns or None)
    k = 0
    for t in parse_targets(cfg.bias):
        for _, m in find_projections(model, fam, t):
            n = out_features(m)
            k += int(fam.fused_layout(model.config, n)[t].numel()) if fam.is_fused(t) else n
    sel = apply_bias(model, "all", patterns=cfg.bias_patterns or None, head=head)
    pool = sel.bias_parameters()
    sizes = [p.numel() for p in pool.values()]
    chosen = torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(cfg.seed))[:k]
    flat = torch.zeros(sum(sizes), dtype=torch.bool)
    flat[chosen] = True
    params, frozen, per_param = dict(sel.head), [], {}
    for (name, p), mask in zip(pool.items(), flat.split(sizes)):
        if not mask.any():
            p.requires_grad_(False)
            continue
        keep = mask.to(device=p.device, dtype=p.dtype)
        p.register_hook(lambda g, keep=keep: g * keep)
        off = (~mask).nonzero().squeeze(1).to(p.device)
        frozen.append((p, off, p.detach()[off].clone()))
        params[name], per_param[name] = p, int(mask.sum())

    def restore() -> None:
        with torch.no_grad():
            for p, off, values in frozen:
                p[off] = values

    counts = Counts(
        sum(numel(p) for p in model.parameters()),
        {"random": k},
        head=sum(numel(p) for p in sel.head.values()),
        tensors_touched=len(per_param),
    )

    def adapter(state: dict) -> dict:  # untouched tensors are not in the optimizer's state
        return {
            **{n: p.detach().to("cpu", copy=True) for n, p in sel.trainable_parameters().items()},
            **state,
        }

    return MethodSetup(
        params,
        counts,
        selection=sel,
        after_step=restore,
        adapter_state=adapter,
        notes=[
            f"rand_uniform: {k:,} entries of {sum(sizes):,} biases, in {len(per_param)} tensors"
        ],
    )


def _trainable_counts(model: nn.Module, head: list[str], total: int) -> Counts:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return Counts(
        total,
        head=sum(numel(p) for n, p in named if in_head(n, head)),
        adapter=sum(numel(p) for n, p in named if not in_head(n, head)),
    )


def _peft_targets(model: nn.Module, cfg, targets: str) -> list[str]:
    from .bias.families import detect_family, find_projections

    fam = detect_family(model, cfg.bias_patterns or None)
    return sorted({n for t in targets for n, _ in find_projections(model, fam, t)})


def _peft_lora(model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    """peft's LoRA (r = peft.lora_r) on the q and v projections, injected in place; the new task
    head trains too."""
    _local_only(cfg, "peft_lora")
    from peft import LoraConfig, inject_adapter_in_model

    total = sum(numel(p) for p in model.parameters())
    lcfg = LoraConfig(
        r=cfg.peft.lora_r,
        lora_alpha=cfg.peft.lora_alpha,
        lora_dropout=cfg.peft.lora_dropout,
        target_modules=_peft_targets(model, cfg, "qv"),
        bias="none",
    )
    inject_adapter_in_model(lcfg, model)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n or in_head(n, head))
    return MethodSetup(
        {n: p for n, p in model.named_parameters() if p.requires_grad},
        _trainable_counts(model, head, total),
    )


def _prefix(model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    """peft prefix tuning (peft.prefix_tokens virtual tokens of keys/values in every layer)."""
    _local_only(cfg, "prefix")
    from peft import PrefixTuningConfig, get_peft_model

    total = sum(numel(p) for p in model.parameters())
    task_type = (
        "SEQ_CLS" if type(model).__name__.endswith("ForSequenceClassification") else "CAUSAL_LM"
    )
    wrapped = get_peft_model(
        model, PrefixTuningConfig(task_type=task_type, num_virtual_tokens=cfg.peft.prefix_tokens)
    )
    for n, p in wrapped.named_parameters():
        if in_head(n.removeprefix("base_model."), head):  # peft's wrapper adds base_model.
            p.requires_grad_(True)
    params = {n: p for n, p in wrapped.named_parameters() if p.requires_grad}
    return MethodSetup(
        params, Counts(total, adapter=sum(numel(p) for p in params.values())), model=wrapped
    )


def _eval_only(model: nn.Module, head: list[str]) -> Counts:
    for p in model.parameters():
        p.requires_grad_(False)
    return Counts(sum(numel(p) for p in model.parameters()))


def _zero_shot(model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    notes = [f"zero_shot: the new head {head} is untrained (random)"] if head else []
    return MethodSetup({}, _eval_only(model, head), trains=False, notes=notes)


def _icl(model: nn.Module, cfg, head: list[str]) -> MethodSetup:
    """k demonstrations (seeded draw from the training split, gold answers) before every
    evaluation prompt; no training."""
    from .tasks.prompts import with_demonstrations

    def transform(task, splits):
        if not hasattr(task, "prompt") or not hasattr(task.prompt, "candidates"):
            raise ValueError(
                "method=icl needs a decoder choice task (prompt + candidates); "
                f"{task.name} ({task.arch}) has none"
            )
        import dataclasses
        import random

        demos = random.Random(cfg.seed).sample(splits.train, min(cfg.icl.k, len(splits.train)))
        return dataclasses.replace(
            task, prompt=with_demonstrations(task.prompt, demos, cfg.icl.sep)
        )

    return MethodSetup(
        {},
        _eval_only(model, head),
        trains=False,
        task_transform=transform,
        notes=[
            f"icl: {cfg.icl.k} demonstrations per prompt; raise data.max_length if "
            "prompts are cut (the left side is dropped first)"
        ],
    )


# keys: config.METHOD_NAMES (validated there), in that order
METHODS: dict[str, Callable[..., MethodSetup]] = {
    "bias": _bias,  # the targets in cfg.bias
    "bitfit": lambda model, cfg, head: _bias(model, cfg, head, targets="all"),
    "full": _full,
    **{kind: _reparam(kind) for kind in REPARAM},
    "rand_uniform": _rand_uniform,
    "peft_lora": _peft_lora,
    "prefix": _prefix,
    "icl": _icl,
    "zero_shot": _zero_shot,
}


def build(name: str, model: nn.Module, cfg, head: list[str], read_full=None) -> MethodSetup:
    """read_full(params) -> full CPU copies (the backend's full_state: ZeRO-3 holds shards)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    if name in REPARAM:
        return METHODS[name](model, cfg, head, read_full=read_full)
    return METHODS[name](model, cfg, head)
