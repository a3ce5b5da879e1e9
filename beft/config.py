"""One typed config: defaults <- YAML recipe <- key=value overrides (dotted keys for nested fields).

Every run directory holds the resolved config (config.yaml), so any run can be repeated exactly:
    python launch/train.py --recipe runs/x/config.yaml
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# bias deltas through beft/reparam (its KINDS)
REPARAM_METHODS = ("lora", "vera", "vera1d", "dora", "pissa")
# every method= (beft/methods.py builds each; its METHODS table follows this order)
METHOD_NAMES = (
    "bias",
    "bitfit",
    "full",
    *REPARAM_METHODS,
    "rand_uniform",
    "peft_lora",
    "prefix",
    "icl",
    "zero_shot",
)
# methods optim.kind=zo can train: the biases themselves, or a reparametrisation of their deltas
ZO_METHODS = ("bias", "bitfit", *REPARAM_METHODS)


class ConfigError(ValueError):
    """An unknown key or a bad value: reported before any model loads."""


@dataclass
class OptimConfig:
    weight_decay: float = 0.0  # stated explicitly: biases get no weight decay by default
    schedule: str = "linear"  # linear | constant (both after warm-up)
    warmup_ratio: float = 0.0  # fraction of all optimizer steps
    warmup_steps: int = 0  # overrides warmup_ratio when > 0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    grad_accum: int = 1  # micro-batches per optimizer step
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    kind: str = "adamw"  # adamw (backpropagation) | zo (forward passes only, see zo.*)


@dataclass
class DataConfig:
    max_length: int = 128
    n_train: int | None = None  # overrides the regime's training-set size
    n_eval: int | None = None  # caps the evaluation set
    eval_batch_size: int = 32
    train_objective: str = "ce"  # decoder tasks: ce over candidates | lm on the gold answer
    # own data (task=FILE | FOLDER | HUB_ID, see beft/tasks/custom.py): columns, splits, label
    # reading
    text: list[str] = field(
        default_factory=lambda: ["text"]
    )  # text column(s): sentence or [premise,hypothesis]
    label: str = "label"  # label column: strings or ints (classes), or floats (regression)
    label_type: str = "auto"  # auto (non-integer numbers: regression) | classification | regression
    train_split: str = "train"  # split name = file name (train.csv) or the hub dataset's split
    eval_split: str = (
        "auto"  # auto: validation | dev | valid | val | eval if there, else held out of train
    )
    eval_fraction: float = 0.1  # held out of the train split (seeded) when there is no eval split
    template: str = ""  # prompt from columns, e.g. '{sentence} It was' (default: the text columns)
    verbalizer: dict[str, str] = field(
        default_factory=dict
    )  # decoder label words: {0: terrible, 1: great}
    completion: str = ""  # decoder prompt/completion pairs: the completion column


@dataclass
class CheckpointConfig:
    every_steps: int = 0  # also checkpoint every N optimizer steps (0: epoch ends only)


@dataclass
class ReparamConfig:
    rank: int = 1  # LoRA / DoRA / PiSSA rank r of the reshaped bias (clamped to min(r1, r2))
    vera_rank: int = 0  # VeRA's frozen random rank (0: min(r1, r2))
    shape: str = "auto"  # auto (closest-to-square r1 x r2) or "R1xR2" (sizes that do not fit: auto)
    alpha: float = 0.0  # LoRA / DoRA scale alpha / rank (0: alpha = rank, scale 1)
    seed: int = 0  # frozen random matrices (VeRA, VeRA-1d) and LoRA init


@dataclass
class RankConfig:
    measure: str = "projection"  # which measure picks the target: projection | magnitude | fisher
    fisher_examples: int = 0  # training examples for the Fisher (0: the whole training split)


@dataclass
class IclConfig:
    k: int = 4  # demonstrations from the training split (method=icl)
    sep: str = "\n\n"  # between demonstrations and before the query


@dataclass
class PeftConfig:
    lora_r: int = 8  # method=peft_lora: peft LoRA on the q and v projections
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    prefix_tokens: int = 16  # method=prefix: peft prefix tuning, virtual tokens


@dataclass
class ZOConfig:
    """optim.kind=zo: SPSA / MeZO-style updates of the selected biases (beft/zo/)."""

    eps: float = 1e-3  # perturbation scale
    n: int = 1  # perturbations per step (2 forward passes each; forward: 1 each + 1 shared)
    difference: str = (
        "central"  # central: (L(+eps z) - L(-eps z)) / 2eps | forward: (L(+eps z) - L(theta)) / eps
    )
    update: str = "sgd"  # sgd | adam (moments over the few trained values)
    subspace: int = (
        0  # value biases only: perturb along the k top right-singular directions of W_o (0: all)
    )
    perturb: str = (
        "batch"  # batch: one z per step (MeZO) | example: one z per example (method=bias/bitfit)
    )
    head: str = (
        "first_order"  # a new task head: first_order (backprop through the head only) | freeze
    )
    probe: bool = False  # fit the new head on frozen features first (linear probing), then ZO
    probe_steps: int = 200  # full-batch AdamW steps of that fit (lr = zo.head_lr)
    head_lr: float = 0.0  # lr of the head's AdamW and probe (0: the run's lr)


@dataclass
class TrainConfig:
    model: str = "minilm"  # hub id, local path, .gguf, or short name (minilm, smollm2)
    task: str = "sst2"
    bias: str = "v"  # q, k, v, o, a combination (qv), all, or auto (needs rank_from)
    method: str = "bias"  # bias | bitfit | full | lora | vera | ... (see beft/methods.py)
    rank_from: str | None = (
        None  # bias=auto: a ranking run's folder (its ranking.json picks q, k or v)
    )
    data_dir: str | None = None  # default: $BEFT_DATA_DIR
    regime: str = "low"  # low | medium | high | all (encoder tasks)
    seed: int = 42
    lr: float | None = (
        None  # None: chosen by method and optim.kind (beft/defaults.py); config.yaml records it
    )
    epochs: int = 3
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit)
    batch_size: int = 16  # global batch (all ranks x accumulation)
    output_dir: str = "runs/default"
    arch: str = "auto"  # auto | encoder | decoder
    bias_patterns: dict[str, str] = field(default_factory=dict)  # target -> module-name regex
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    quant: str = "none"  # none | 8bit | 4bit (bitsandbytes base weights)
    backend: str = (
        "local"  # local | ddp | deepspeed | fsdp (launcher flags; beft/backends/choose.py)
    )
    deepspeed_config: str | None = None
    resume: bool = False
    overwrite: bool = False  # replace a finished result in output_dir
    log_every: int = 10
    report_to: str = (
        "none"  # none | tensorboard | wandb | tensorboard,wandb (rank 0; metrics.jsonl always)
    )
    log_level: str = "info"  # info | debug (debug: third-party load reports and warnings too)
    eval_every: int = 1  # evaluate every N epochs (0: only after the last); the last always
    threads: int = 0  # torch CPU threads per rank (0: torch's default)
    activation_checkpointing: bool = False  # first-order path: recompute activations in backward
    optim: OptimConfig = field(default_factory=OptimConfig)
    zo: ZOConfig = field(default_factory=ZOConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    reparam: ReparamConfig = field(default_factory=ReparamConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    icl: IclConfig = field(default_factory=IclConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)

    def validate(self) -> "TrainConfig":
        choices = {
            "method": METHOD_NAMES,
            "regime": ("low", "medium", "high", "all"),
            "arch": ("auto", "encoder", "decoder"),
            "precision": ("auto", "fp32", "bf16", "fp16"),
            "quant": ("none", "8bit", "4bit"),
            "backend": ("local", "ddp", "deepspeed", "fsdp"),
            "optim.schedule": ("linear", "constant"),
            "optim.kind": ("adamw", "zo"),
            "zo.update": ("sgd", "adam"),
            "zo.perturb": ("batch", "example"),
            "zo.difference": ("central", "forward"),
            "zo.head": ("first_order", "freeze"),
            "data.train_objective": ("ce", "lm"),
            "rank.measure": ("projection", "magnitude", "fisher"),
            "log_level": ("info", "debug"),
            "data.label_type": ("auto", "classification", "regression"),
        }
        for key, allowed in choices.items():
            value = _get(self, key)
            if value not in allowed:
                raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")
        if self.lr is None:
            from .defaults import BY_ARCH, default_lr, model_arch

            arch = self.arch
            if arch == "auto" and self.method in BY_ARCH and self.optim.kind != "zo":
                arch = model_arch(self.model)
            self.lr = default_lr(self.method, self.optim.kind, arch)
        positive = {
            "reparam.rank": self.reparam.rank,
            "peft.lora_r": self.peft.lora_r,
            "peft.prefix_tokens": self.peft.prefix_tokens,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "optim.grad_accum": self.optim.grad_accum,
            "data.max_length": self.data.max_length,
            "data.eval_batch_size": self.data.eval_batch_size,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key}={value} must be > 0")
        for key in ("threads", "zo.probe_steps"):
            if _get(self, key) < 0:
                raise ConfigError(f"{key}={_get(self, key)} must be >= 0")
        for key in ("data.n_train", "data.n_eval"):
            if _get(self, key) is not None and not _get(self, key) > 0:
                raise ConfigError(
                    f"{key}={_get(self, key)} must be > 0 (leave it unset for the regime's size)"
                )
        for key in ("optim.weight_decay", "optim.grad_clip", "optim.eps"):
            if not _get(self, key) >= 0:
                raise ConfigError(f"{key}={_get(self, key)} must be >= 0")
        if not all(0 <= b < 1 for b in self.optim.betas):
            raise ConfigError(
                f"optim.betas={','.join(map(str, self.optim.betas))} must both be in [0, 1), e.g."
                " 0.9,0.999"
            )
        for key, pattern in self.bias_patterns.items():
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(
                    f"bias_patterns: {key}={pattern!r} is not a valid regular expression ({e})"
                ) from None
        if self.eval_every < 0:
            raise ConfigError(
                f"eval_every={self.eval_every} must be >= 0 (0: evaluate after the last epoch only)"
            )
        for key in (
            "icl.k",
            "reparam.vera_rank",
            "rank.fisher_examples",
            "epochs",
            "max_steps",
            "seed",
            "optim.warmup_steps",
            "checkpoint.every_steps",
            "log_every",
        ):
            if _get(self, key) < 0:
                raise ConfigError(f"{key}={_get(self, key)} must be >= 0")
        if not 0 < self.data.eval_fraction < 1 or not self.data.text or not all(self.data.text):
            raise ConfigError(
                f"data.eval_fraction={self.data.eval_fraction} must be in (0, 1) and data.text name"
                " at least one column, e.g. data.text=sentence or data.text=[premise,hypothesis]"
            )
        if self.epochs == 0 and self.max_steps == 0:
            raise ConfigError("epochs=0 and max_steps=0: nothing to train; set one of them")
        if not 0 <= self.optim.warmup_ratio < 1:
            raise ConfigError(f"optim.warmup_ratio={self.optim.warmup_ratio} must be in [0, 1)")
        if self.quant != "none" and self.backend == "fsdp":
            raise ConfigError(
                f"--load_in_{self.quant} with --fsdp is not supported by bitsandbytes/FSDP2; "
                "use DeepSpeed (--config ds_configs/zero2.json) or a single process"
            )
        if self.optim.kind == "zo":
            if self.method not in ZO_METHODS:
                raise ConfigError(
                    f"optim.kind=zo trains bias targets (method={' | '.join(ZO_METHODS)}), not "
                    f"method={self.method}"
                )
            if self.optim.grad_accum != 1 or not self.zo.eps > 0 or self.zo.n < 1:
                raise ConfigError(
                    "optim.kind=zo needs optim.grad_accum=1, zo.eps > 0 and zo.n >= 1"
                )
            if self.zo.subspace < 0:
                raise ConfigError(
                    f"zo.subspace={self.zo.subspace} must be >= 0 (0: every direction)"
                )
            if self.zo.head_lr < 0:
                raise ConfigError(f"zo.head_lr={self.zo.head_lr} must be >= 0 (0: the run's lr)")
            if self.activation_checkpointing:
                raise ConfigError(
                    "activation_checkpointing=true is for first-order training; optim.kind=zo keeps"
                    " no activations for a backward pass (drop one of the two)"
                )
        if self.quant != "none" and self.backend == "deepspeed":
            raise ConfigError(
                f"--load_in_{self.quant} with DeepSpeed is not supported yet (no test shows it "
                "trains correctly); use a single process with --load_in_8bit"
            )
        if self.precision == "fp16" and self.backend != "deepspeed" and self.optim.kind != "zo":
            raise ConfigError(
                "precision=fp16 needs loss scaling (bias gradients underflow in fp16), which only "
                "the DeepSpeed backend applies here; use precision=bf16 or fp32, or DeepSpeed"
            )
        if self.backend == "deepspeed" and not self.deepspeed_config:
            raise ConfigError(
                "backend=deepspeed needs --config ds_configs/<zero2|zero3|zero3_offload>.json"
            )
        if self.backend != "deepspeed" and self.deepspeed_config:
            raise ConfigError(
                f"deepspeed_config={self.deepspeed_config} contradicts backend={self.backend}: "
                "drop one of them (--config FILE selects DeepSpeed, --fsdp FSDP2)"
            )
        from .tracking import parse_report_to

        try:
            self.report_to = ",".join(parse_report_to(self.report_to)) or "none"
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.reparam.shape != "auto" and not _is_shape(self.reparam.shape):
            raise ConfigError(
                f"reparam.shape={self.reparam.shape!r} must be auto or R1xR2, e.g. 16x24"
            )
        if self.bias == "auto":
            if not self.rank_from:
                raise ConfigError(
                    "bias=auto needs rank_from=DIR (a ranking run made by launch/rank.py)"
                )
            return self
        from .bias.inject import parse_targets

        # recorded in its one spelling ('vv', 'V', 'v,q' -> 'v', 'v', 'qv'): one sweep run id each
        try:
            self.bias = "".join(parse_targets(self.bias))
        except ValueError as e:
            raise ConfigError(f"bias={self.bias!r}: {e}") from None
        return self

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))


def _is_shape(spec: str) -> bool:
    parts = spec.lower().split("x")
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts)


def _plain(x):
    if isinstance(x, tuple):
        return list(x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _coerce(value: Any, tp, key: str):
    """Convert a YAML value or CLI string to the field's declared type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "true",
            "1",
            "yes",
            "on",
            "false",
            "0",
            "no",
            "off",
        ):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key}={value!r} is not a boolean (true/false)")
    if tp in (int, float):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = (
                tp(float(value))
                if tp is int and isinstance(value, str) and "e" in value.lower()
                else tp(value)
            )
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                f"{key}={value!r} is not {'an integer' if tp is int else 'a number'}"
            ) from None
        if tp is float and not math.isfinite(out):
            raise ConfigError(f"{key}={value!r} is not a finite number")
        return out
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be a string, got {type(value).__name__}")
        return str(value)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        args = typing.get_args(tp)
        if len(items) != len(args):
            raise ConfigError(f"{key}={value!r} needs {len(args)} comma-separated values")
        return tuple(_coerce(v, a, key) for v, a in zip(items, args))
    if origin is list:  # a YAML list, "[a,b]" or "a,b"
        if isinstance(value, str):
            value = (
                _flow(value, key)
                if value.lstrip().startswith("[")
                else [v.strip() for v in value.split(",")]
            )
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, e.g. {key}=[a,b]")
        return [_coerce(v, typing.get_args(tp)[0], key) for v in value]
    if origin is dict:
        if isinstance(value, str) and value.lstrip().startswith("{"):  # "{0: terrible, 1: great}"
            value = _flow(value, key)
        if isinstance(value, str):  # "v=REGEX;q=REGEX"
            try:
                return dict(item.split("=", 1) for item in value.split(";") if item)
            except ValueError:
                raise ConfigError(f"{key}={value!r} must look like 'v=REGEX;q=REGEX'") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping")
        return {str(k): str(v) for k, v in value.items()}
    return value


def _flow(text: str, key: str):
    """A YAML flow list or mapping from the command line, every scalar read as a string ('yes',
    '0')."""
    try:
        return yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        raise ConfigError(
            f"{key}={text!r} is not a YAML list / mapping, e.g. [a,b] or {{0: no, 1: yes}}"
        ) from None


def _set(cfg, dotted: str, value: Any, full_key: str | None = None) -> None:
    full_key = full_key or dotted
    head, _, rest = dotted.partition(".")
    hints = typing.get_type_hints(type(cfg))
    if head not in hints:
        close = difflib.get_close_matches(head, list(hints), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(hints)}"
        raise ConfigError(f"unknown config key {full_key!r}{hint}")
    current = getattr(cfg, head)
    if dataclasses.is_dataclass(current):
        if rest:
            _set(current, rest, value, full_key)
        elif isinstance(value, dict):
            for k, v in value.items():
                _set(current, k, v, f"{full_key}.{k}")
        else:
            raise ConfigError(
                f"{full_key} is a section; set its fields, e.g. {full_key}.<field>=..."
            )
        return
    if rest:
        raise ConfigError(f"unknown config key {full_key!r}: {head} has no fields")
    setattr(cfg, head, _coerce(value, hints[head], full_key))


def load_config(
    recipe: str | Path | None = None, overrides: list[str] | dict | None = None, **fixed
) -> TrainConfig:
    """defaults <- recipe YAML <- overrides ('key=value' strings or a dict) <- fixed (launcher
    flags)."""
    cfg = TrainConfig()
    if recipe:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"recipe {path} does not exist")
        with open(path) as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(
                    f"recipe {path} is not valid YAML: {' '.join(str(e).split())}"
                ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"recipe {path} must be a YAML mapping of config keys")
        for k, v in data.items():
            _set(cfg, k, v)
    items = (
        overrides.items()
        if isinstance(overrides, dict)
        else [tuple(o.split("=", 1)) if "=" in o else (o, None) for o in overrides or []]
    )
    for k, v in items:
        if v is None:
            raise ConfigError(f"argument {k!r} is not key=value (e.g. bias=v)")
        _set(cfg, k, v)
    for k, v in fixed.items():
        _set(cfg, k, v)
    return cfg.validate()


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
