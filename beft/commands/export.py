"""Turn a bias adapter into a peft adapter or a standalone merged checkpoint.

    beft export ADAPTER_DIR peft=OUT_DIR [base=MODEL] [overwrite=true]
    beft export ADAPTER_DIR merge=OUT_DIR [base=MODEL] [overwrite=true]

ADAPTER_DIR is a run's adapter/ folder (or a run folder holding one; runs/x/adapter_best for the
best evaluation's). base defaults to the model recorded in the adapter, as the user named it
(a short name, hub id or folder); a base whose config.json differs from the recorded one's is
exported with a warning. The peft folder loads with peft.PeftModel.from_pretrained(base, OUT_DIR);
the merged folder with plain transformers (AutoModel*.from_pretrained).

OUT_DIR must not exist yet. overwrite=true replaces a previous export there (a folder this command
wrote, holding nothing else), atomically; a training run or adapter folder is never replaced, and
OUT_DIR may never be, lie inside, or hold ADAPTER_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..cli import UsageError, parse_kv

BOOL = {"true": True, "1": True, "false": False, "0": False}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    from ..bias.adapter import load_adapter, read_adapter
    from ..bias.export import check_output, export_peft, merge_checkpoint
    from ..models import base_identity, load_model

    src = Path(argv[0])
    if (src / "adapter").is_dir():
        src = src / "adapter"
    opts = parse_kv(argv[1:], allowed={"peft", "merge", "base", "overwrite"})
    if ("peft" in opts) == ("merge" in opts):
        raise UsageError("give exactly one of peft=OUT_DIR or merge=OUT_DIR")
    kind = "peft" if "peft" in opts else "merge"
    if not opts[kind]:
        raise UsageError(f"{kind}= needs a folder: {kind}=OUT_DIR")
    overwrite = BOOL.get(opts.get("overwrite", "false").lower())
    if overwrite is None:
        raise UsageError(f"overwrite={opts['overwrite']!r} is not a boolean (true/false)")
    sources = (Path(argv[0]), src)
    check_output(opts[kind], overwrite=overwrite, sources=sources)  # before the model loads
    tensors, meta = read_adapter(src)
    base = opts.get("base") or meta["base_model"]
    if not base:
        raise UsageError("the adapter does not record its base model; pass base=MODEL")
    arch = "encoder" if meta["architecture"].endswith("ForSequenceClassification") else "decoder"
    num_labels = None
    if arch == "encoder":
        w = [t for n, t in tensors.items() if n.startswith(tuple(meta["head"])) and t.dim() == 2]
        num_labels = w[-1].shape[0] if w else 2
    recorded = meta.get("base_config_sha256")
    if recorded and base_identity(base)["base_config_sha256"] not in (recorded, None):
        print(
            f"warning: {base}'s config.json differs from the one the adapter was trained on "
            f"(sha256 {recorded[:12]}...); exporting anyway",
            file=sys.stderr,
        )
    model, tokenizer, _ = load_model(base, arch, num_labels=num_labels)
    model.config._name_or_path = (
        base  # the peft export records the base as named, not this machine's path
    )
    selection = load_adapter(model, src)
    if kind == "peft":
        out = export_peft(opts["peft"], selection, model, overwrite=overwrite, sources=sources)
    else:
        out = merge_checkpoint(
            opts["merge"],
            selection,
            model,
            tokenizer=tokenizer,
            overwrite=overwrite,
            sources=sources,
        )
    print(f"wrote {out}")
    return 0
