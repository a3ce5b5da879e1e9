"""Bias inventory: which projections have native biases, which beft would add, shapes, counts.

    beft inventory model=MODEL [bias=v] [arch=decoder] [num_labels=2] [bias_patterns=v=REGEX] [json=true]
    beft inventory MODEL ...                     (the model first, without model=: the same)
    beft inventory --recipe runs/x/config.yaml    (a run's model, bias, arch and bias_patterns)

model, bias, arch and bias_patterns are training-config keys and mean what they mean there.
MODEL: a hub id, a local folder, a .gguf file (or folder holding one), or a short name
(minilm, smollm2). Nothing but the config is read: the model is built on the meta device.
"""

from __future__ import annotations

from pathlib import Path

from ..cli import UsageError, json_command, model_config, parse_kv
from ..config import _coerce
from ..config import load_config as train_config
from .flags import parse_flags


def _main(argv: list[str], emit) -> int:
    from ..bias.inventory import format_report, inventory, structure_model
    from ..models import resolve_arch

    args = parse_flags(argv)
    if args.fixed:
        raise UsageError(
            f"{next(iter(args.flags.values()))} does not apply to the inventory (it reads the"
            " model's config alone)"
        )
    rest = args.overrides
    name = rest.pop(0) if rest and ("=" not in rest[0] or Path(rest[0]).exists()) else None
    opts = parse_kv(rest, allowed={"model", "bias", "arch", "num_labels", "bias_patterns", "json"})
    if name and opts.get("model", name) != name:
        raise UsageError(f"two models given: {name} and model={opts['model']}; give one")
    # model, bias, arch and bias_patterns are training-config keys: beft/config.py parses and
    # validates them
    keys = ("model", "bias", "arch", "bias_patterns")
    cfg = train_config(
        args.recipe,
        overrides={k: opts[k] for k in keys if k in opts} | ({"model": name} if name else {}),
    )
    if not (name or "model" in opts or args.recipe):
        raise UsageError(
            "no model: give model=NAME (e.g. model=minilm), or the model as the first argument, "
            "then key=value options"
        )
    name = cfg.model
    num_labels = _coerce(opts.get("num_labels", 2), int, "num_labels")
    if num_labels < 1:
        raise UsageError(
            f"num_labels={num_labels} must be >= 1 (classes of the encoder's task head)"
        )
    as_json = _coerce(opts.get("json", False), bool, "json")
    config = model_config(name)
    arch = resolve_arch(cfg.arch, config)
    if arch == "encoder":
        config.num_labels = num_labels
    model = structure_model(config, arch)
    head = ["classifier", "score"] if arch == "encoder" else []
    head = [h for h in head if hasattr(model, h)]
    _, report = inventory(model, cfg.bias, patterns=cfg.bias_patterns or None, head=head)
    if as_json:
        emit(report)
    else:
        print(format_report(report, name))
    return 0


main = json_command(__doc__, _main)
