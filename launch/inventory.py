#!/usr/bin/env python
"""Bias inventory: which projections have native biases, which beft would add, shapes, counts.

    python launch/inventory.py MODEL [bias=v] [arch=decoder] [num_labels=2] [bias_patterns=v=REGEX] [json=true]

MODEL: a hub id, a local folder, a .gguf file (or folder holding one), or a short name
(minilm, smollm2). Nothing but the config is read: the model is built on the meta device.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beft.cli import UsageError, machine_output, model_config, parse_kv, run, wants_json  # noqa: E402
from beft.config import _coerce, load_config as train_config  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    # json=true: stdout is the report alone; what torch / transformers / DeepSpeed print goes to stderr
    with machine_output(wants_json(argv[1:])) as emit:
        return _main(argv, emit)


def _main(argv: list[str], emit) -> int:
    from beft.bias.inventory import format_report, inventory, structure_model
    from beft.models import is_encoder
    name, opts = argv[0], parse_kv(argv[1:], allowed={"bias", "arch", "num_labels", "bias_patterns", "json"})
    if "=" in name and not Path(name).exists():
        raise UsageError(f"{name!r}: the first argument is the model (e.g. minilm), then key=value options")
    # bias, arch and bias_patterns are training-config keys: beft/config.py parses and validates them
    cfg = train_config(overrides={k: opts[k] for k in ("bias", "arch", "bias_patterns") if k in opts})
    num_labels = _coerce(opts.get("num_labels", 2), int, "num_labels")
    if num_labels < 1:
        raise UsageError(f"num_labels={num_labels} must be >= 1 (classes of the encoder's task head)")
    as_json = _coerce(opts.get("json", False), bool, "json")
    config = model_config(name)
    arch = cfg.arch if cfg.arch != "auto" else ("encoder" if is_encoder(config) else "decoder")
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


if __name__ == "__main__":
    run(main, sys.argv[1:])
