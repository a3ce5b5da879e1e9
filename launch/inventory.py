#!/usr/bin/env python
"""Bias inventory: which projections have native biases, which beft would add, shapes, counts.

    python launch/inventory.py MODEL [bias=v] [arch=decoder] [num_labels=2] [bias_patterns=v=REGEX] [json=true]

MODEL: a hub id, a local folder, a .gguf file (or folder holding one), or a short name
(minilm, smollm2). Nothing but the config is read: the model is built on the meta device.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beft.bias.inventory import format_report, inventory, structure_model  # noqa: E402
from beft.cli import parse_kv, run  # noqa: E402
from beft.models import is_encoder, load_config  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    name, opts = argv[0], parse_kv(argv[1:], allowed={"bias", "arch", "num_labels", "bias_patterns", "json"})
    config = load_config(name)
    arch = opts.get("arch") or ("encoder" if is_encoder(config) else "decoder")
    if arch == "encoder":
        config.num_labels = int(opts.get("num_labels", 2))
    patterns = dict(p.split("=", 1) for p in opts["bias_patterns"].split(";")) if opts.get("bias_patterns") else None
    model = structure_model(config, arch)
    head = ["classifier", "score"] if arch == "encoder" else []
    head = [h for h in head if hasattr(model, h)]
    _, report = inventory(model, opts.get("bias", "v"), patterns=patterns, head=head)
    if opts.get("json") in ("1", "true"):
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report, name))
    return 0


if __name__ == "__main__":
    run(main, sys.argv[1:])
