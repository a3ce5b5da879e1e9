"""What a bias selection would do to a model: native vs added biases, shapes, counts."""

from __future__ import annotations

import torch
import transformers as tf

from .detect import out_features
from .inject import apply_bias
from .selection import BiasSelection, numel


def structure_model(config, arch: str):
    """The model's modules on the meta device: no weights read, so a 7B model costs nothing."""
    cls = tf.AutoModelForSequenceClassification if arch == "encoder" else tf.AutoModelForCausalLM
    with torch.device("meta"):
        return cls.from_config(config)


def inventory(
    model, targets, patterns: dict[str, str] | None = None, head=()
) -> tuple[BiasSelection, dict]:
    """Apply the selection (on a throwaway/meta model) and report per target."""
    selection = apply_bias(model, targets, patterns=patterns, head=head)
    per_target: dict[str, dict] = {}
    for s in selection.sites:
        for t, n in s.counts.items():
            row = per_target.setdefault(
                t,
                {
                    "modules": 0,
                    "native": 0,
                    "added": 0,
                    "shapes": set(),
                    "trainable": 0,
                    "example": s.name,
                },
            )
            row["modules"] += 1
            row["added" if s.added else "native"] += 1
            row["shapes"].add(out_features(s.module) if len(s.counts) == 1 else n)
            row["trainable"] += n
    counts = selection.counts(model)
    for row in per_target.values():
        row["shapes"] = sorted(row["shapes"])
    report = {
        "family": selection.family,
        "targets": selection.targets,
        "per_target": per_target,
        "other_biases": {
            "tensors": len(selection.extra),
            "trainable": sum(numel(p) for p in selection.extra.values()),
        },
        "head": {"modules": selection.head_modules, "trainable": counts.head},
        "bias_trainable": counts.bias,
        "total": counts.total,
        "bias_per_mille": counts.bias_per_mille,
    }
    return selection, report


def format_report(report: dict, model_name: str) -> str:
    lines = [
        f"model: {model_name}  family: {report['family']}  targets: {','.join(report['targets'])}",
        (
            f"{'target':<7}{'modules':>8}{'native':>8}{'added':>7} "
            f" {'bias size':<12}{'trainable':>11}  example"
        ),
    ]
    for t, r in report["per_target"].items():
        shapes = ",".join(map(str, r["shapes"]))
        lines.append(
            f"{t:<7}{r['modules']:>8}{r['native']:>8}{r['added']:>7}  {shapes:<12}"
            f"{r['trainable']:>11,}  {r['example']}"
        )
    if report["other_biases"]["tensors"]:
        o = report["other_biases"]
        lines.append(
            f"{'other':<7}{o['tensors']:>8}{o['tensors']:>8}{0:>7}  {'':<12}{o['trainable']:>11,}"
            "  (layer norms, MLP, ...)"
        )
    lines.append(
        f"bias parameters: {report['bias_trainable']:,} of {report['total']:,} "
        f"({report['bias_per_mille']:.4f} per mille)"
    )
    if report["head"]["modules"]:
        lines.append(
            f"task head (new, trained, counted apart): {report['head']['trainable']:,} "
            f"in {', '.join(report['head']['modules'])}"
        )
    return "\n".join(lines)
