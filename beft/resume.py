"""resume=true: what a run may change when it continues from its checkpoint, and its log cut back.

A checkpoint holds the config that trained it (checkpoints/last/config.yaml; older checkpoints:
the run's config.yaml). The new config must equal it except for the keys in MAY_CHANGE, which
change how long the run goes, how often it logs, evaluates and checkpoints, or where it runs,
never what one optimizer step computes. Any other difference (lr, seed, task, bias, model, ...)
would mix two runs in one adapter: refused, one line naming each differing key.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .config import TrainConfig, dump_config
from .outputs import RunDir

# max_steps / epochs: lengthen (or shorten down to the checkpoint's step) the run; the linear
# schedule then decays over the new total from the checkpoint on
MAY_CHANGE = (
    "max_steps",
    "epochs",
    "log_every",
    "eval_every",
    "checkpoint.every_steps",
    "data.eval_batch_size",
    "threads",
    "resume",
    "overwrite",
    "output_dir",
    "data_dir",
    "report_to",
    "log_level",
)


class ResumeError(ValueError):
    """The new config cannot continue this checkpoint."""


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and k != "bias_patterns":
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def checkpoint_config(run_dir: RunDir) -> dict | None:
    """The flattened config that trained the last checkpoint; None when there is no checkpoint."""
    ckpt = run_dir.last_checkpoint
    if not (ckpt / "meta.json").is_file():
        return None
    for path in (ckpt / "config.yaml", run_dir.config):
        if path.is_file():
            return flatten(yaml.safe_load(path.read_text()) or {})
    return None


def differences(old: dict, new: dict, defaults: dict) -> dict[str, list]:
    """key -> [old, new] for each key whose value differs (a key the old config lacks counts as
    its default: a config key added since the checkpoint was made)."""
    out = {}
    for key in sorted(set(old) | set(new)):
        was = old.get(key, defaults.get(key))
        now = new.get(key, defaults.get(key))
        if was != now:
            out[key] = [was, now]
    return out


def as_written(cfg: TrainConfig) -> dict:
    """The flattened config as config.yaml holds it (YAML types: lists, not tuples)."""
    return flatten(yaml.safe_load(dump_config(cfg)))


def check(run_dir: RunDir, cfg: TrainConfig) -> dict[str, list]:
    """The changes (key -> [old, new]) of a resume that may change them; ResumeError naming the
    keys that may not."""
    old = checkpoint_config(run_dir)
    if old is None:
        return {}
    changed = differences(old, as_written(cfg), as_written(TrainConfig()))
    refused = {k: v for k, v in changed.items() if k not in MAY_CHANGE}
    if refused:
        listed = ", ".join(f"{k} ({_show(a)} -> {_show(b)})" for k, (a, b) in refused.items())
        raise ResumeError(
            f"resume=true: the checkpoint in {run_dir.last_checkpoint} was trained with another"
            f" config: {listed}; resume with its values or start a new run in another output_dir;"
            f" on resume only {', '.join(MAY_CHANGE)} may change"
        )
    return changed


def _show(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def log_lines(meta_path: Path) -> int | None:
    """How many metrics.jsonl lines the checkpoint had seen (None: a checkpoint older than that
    count)."""
    meta = json.loads(meta_path.read_text())
    return meta.get("metrics_lines")
