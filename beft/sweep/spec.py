"""A sweep spec: a YAML grid over config keys, per-model / per-task overrides, launcher and SLURM
resources. load_spec() validates everything (one-line SpecError) and expands the grid into Runs.

    name: table5
    root: runs/sweeps/table5            # sweep root, relative to the working directory
    grid: {model: [...], task: [...], bias: [q, k, v], seed: [0, 1, 2]}
    config: {epochs: 5, data.max_length: 256}            # every run
    per_model: {facebook/opt-6.7b: {precision: bf16, launcher: {...}, slurm: {...}}}
    per_task: {cb: {lr: 1e-2}}                           # wins over per_model, which wins over config
    launcher: {kind: python|torchrun|deepspeed, nproc: 1, ds_config: ds_configs/zero3.json}
    slurm: {partition: gpu, nodes: 1, gpus_per_node: 1, cpus_per_task: 8, mem_gb: 64, time_min: 240,
            account: null, qos: null, array_parallelism: 32, signal_delay_s: 120}
    local: {parallelism: 1}
    collect: {metric: final, scale: 100}
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOP_KEYS = (
    "name",
    "root",
    "grid",
    "config",
    "per_model",
    "per_task",
    "launcher",
    "slurm",
    "local",
    "collect",
)
LAUNCHERS = ("python", "torchrun", "deepspeed")
# Keys that say where/how a run executes, not what it computes: left out of the run id.
NOT_IN_ID = ("output_dir", "resume", "overwrite")


class SpecError(ValueError):
    """A bad sweep spec: one line, naming the file and the key."""


@dataclass(frozen=True)
class Launcher:
    kind: str = "python"  # python: one process; torchrun: FSDP2 ranks; deepspeed: ZeRO ranks
    nproc: int = 1  # processes per node (slurm.nodes nodes), started inside the allocation
    ds_config: str | None = None  # deepspeed only

    def backend(self) -> dict:
        if self.kind == "deepspeed":
            return {"backend": "deepspeed", "deepspeed_config": self.ds_config}
        return {"backend": "fsdp" if self.kind == "torchrun" else "local"}


@dataclass(frozen=True)
class Resources:
    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float = 8
    time_min: int = 60
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = 16  # at most this many array tasks run at once
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: checkpoint + requeue


@dataclass(frozen=True)
class Run:
    run_id: str
    config: dict  # resolved TrainConfig as a dict (output_dir set, resume=true)
    launcher: Launcher
    resources: Resources
    axes: dict  # this run's value on each grid axis

    @property
    def output_dir(self) -> Path:
        return Path(self.config["output_dir"])

    @property
    def target(self) -> str:
        """The row label in tables: the bias target for method=bias, else the method."""
        return self.config["bias"] if self.config["method"] == "bias" else self.config["method"]


@dataclass
class Spec:
    name: str
    path: Path
    root: Path
    grid: dict[str, list]
    runs: list[Run]
    local_parallelism: int = 1
    collect: dict = field(default_factory=lambda: {"metric": "final", "scale": 100.0})


# ---------------------------------------------------------------------------------- run ids
def run_id(config: dict) -> str:
    """Stable id: readable prefix + hash of the resolved config's values that differ from beft's
    defaults (NOT_IN_ID keys left out). Only the differences: a key that a later beft adds, at
    its default, leaves every existing sweep's ids (and so its finished runs) where they were."""
    from beft.config import TrainConfig

    keyed = _differences(
        {k: v for k, v in config.items() if k not in NOT_IN_ID}, TrainConfig().to_dict()
    )
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()
    target = config["bias"] if config["method"] == "bias" else config["method"]
    parts = [
        _slug(config["model"]),
        config["task"],
        target,
        config["regime"],
        f"s{config['seed']}",
        digest[:10],
    ]
    return "-".join(_slug(str(p)) for p in parts)


def _differences(config: dict, default: dict) -> dict:
    out = {}
    for k, v in config.items():
        d = default.get(k, _MISSING)
        if isinstance(v, dict) and isinstance(d, dict):
            v = _differences(v, d)
            if v:
                out[k] = v
        elif v != d:
            out[k] = v
    return out


_MISSING = object()


def _slug(text: str) -> str:
    text = text.rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9.]+", "_", text).strip("_")[:32] or "x"


# ---------------------------------------------------------------------------------- loading
def load_spec(path: str | Path, root: str | Path | None = None) -> Spec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    return parse_spec(data, path, root)


def parse_spec(data: Any, path: Path = Path("<spec>"), root: str | Path | None = None) -> Spec:
    def err(msg: str) -> SpecError:
        return SpecError(f"{path}: {msg}")

    if not isinstance(data, dict):
        raise err("a sweep spec must be a YAML mapping")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise err(f"unknown key {unknown[0]!r}; known: {', '.join(TOP_KEYS)}")
    name = data.get("name") or path.stem
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise err(f"name={name!r} must be letters, digits, '_', '.', '-'")
    root = Path(root or data.get("root") or f"runs/sweeps/{name}").expanduser().resolve()

    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise err("'grid' must be a non-empty mapping of config key -> list of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise err(f"grid.{key} must be a non-empty list")
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise err(f"grid.{key} lists a value twice")
        if key in NOT_IN_ID + ("backend", "deepspeed_config"):
            raise err(f"grid.{key}: {key} is set by the sweep, not a grid axis")
    for key in ("model", "task"):
        if key not in grid and key not in (data.get("config") or {}):
            raise err(f"set {key} in 'grid' or 'config'")

    base = _flat(_mapping(data.get("config"), "config", err), "config", err)
    clash = sorted(set(base) & set(grid))
    if clash:
        raise err(f"config.{clash[0]} is also a grid axis; set it in one place")
    launcher = _launcher(data.get("launcher"), "launcher", err)
    resources = _resources(data.get("slurm"), "slurm", err)
    per = {}
    for section, axis in (("per_model", "model"), ("per_task", "task")):
        table = _mapping(data.get(section), section, err)
        known = [str(v) for v in grid.get(axis, [base.get(axis)])]
        for value, over in table.items():
            if str(value) not in known:
                raise err(
                    f"{section}.{value}: {value!r} is not a {axis} of this sweep"
                    f" ({', '.join(known)})"
                )
            over = dict(_mapping(over, f"{section}.{value}", err))
            lau = _launcher(
                over.pop("launcher", None), f"{section}.{value}.launcher", err, launcher
            )
            res = _resources(over.pop("slurm", None), f"{section}.{value}.slurm", err, resources)
            flat = _flat(over, f"{section}.{value}", err)
            clash = sorted(set(flat) & set(grid))
            if clash:
                raise err(f"{section}.{value} sets grid axis {clash[0]!r}")
            per[(axis, str(value))] = (flat, lau, res)

    local = _mapping(data.get("local"), "local", err)
    if set(local) - {"parallelism"}:
        raise err(
            f"local: unknown key {sorted(set(local) - {'parallelism'})[0]!r}; known: parallelism"
        )
    parallelism = local.get("parallelism", 1)
    if not isinstance(parallelism, int) or parallelism < 1:
        raise err(f"local.parallelism={parallelism!r} must be an integer >= 1")
    collect = {"metric": "final", "scale": 100.0, **_mapping(data.get("collect"), "collect", err)}
    if set(collect) - {"metric", "scale"} or collect["metric"] not in ("final", "best"):
        raise err("collect takes metric: final|best and scale: NUMBER")

    runs = _expand(grid, base, per, launcher, resources, root, err)
    return Spec(
        name=name,
        path=path,
        root=root,
        grid=grid,
        runs=runs,
        local_parallelism=parallelism,
        collect=collect,
    )


def _expand(grid, base, per, launcher, resources, root, err) -> list[Run]:
    from beft.config import ConfigError, load_config
    from beft.tasks.registry import TASKS, builtin, known_task

    known_tasks = set(TASKS["encoder"]) | set(TASKS["decoder"])
    keys = list(grid)
    runs, seen = [], {}
    for values in itertools.product(*(grid[k] for k in keys)):
        axes = dict(zip(keys, values))
        over, lau, res = dict(base), launcher, resources
        over.update(axes)
        for axis in ("model", "task"):
            if (axis, str(over.get(axis))) in per:
                extra, lau2, res2 = per[(axis, str(over[axis]))]
                over.update(extra)
                lau = lau2 if lau2 != launcher else lau
                res = res2 if res2 != resources else res
        label = "/".join(f"{k}={v}" for k, v in axes.items())
        if res.nodes > 1 and lau.kind == "python":
            raise err(
                f"run {label}: slurm.nodes={res.nodes} needs launcher kind torchrun or deepspeed "
                "(one launcher per node, nproc ranks each); kind python runs one process"
            )
        task = str(over.get("task"))
        if not known_task(task):
            raise err(
                f"run {label}: unknown task {task!r}; known: {', '.join(sorted(known_tasks))}, or"
                " own data (a data file or folder, or a hub dataset id owner/name)"
            )
        if (
            not builtin(task) and Path(task).expanduser().exists()
        ):  # own data: jobs may run elsewhere
            over["task"] = str(Path(task).expanduser().resolve())
        over.update(lau.backend(), resume=True, overwrite=False, output_dir="-")
        try:
            cfg = load_config(None, {k: v for k, v in over.items()}).to_dict()
        except (ConfigError, ValueError) as e:
            raise err(f"run {label}: {e}") from None
        rid = run_id(cfg)
        if rid in seen:
            raise err(f"runs {seen[rid]} and {label} resolve to the same config (id {rid})")
        seen[rid] = label
        cfg["output_dir"] = str(root / rid)
        runs.append(Run(run_id=rid, config=cfg, launcher=lau, resources=res, axes=axes))
    return runs


# ---------------------------------------------------------------------------------- pieces
def _mapping(value, where: str, err) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise err(f"{where} must be a mapping")
    return value


def _flat(mapping: dict, where: str, err) -> dict:
    """Nested sections (optim:, data:, checkpoint:) -> dotted keys, so overrides merge per field."""
    from beft.config import TrainConfig

    sections = {
        f.name
        for f in dataclasses.fields(TrainConfig)
        if dataclasses.is_dataclass(f.default_factory)
    }
    out = {}
    for k, v in mapping.items():
        if k in sections and isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        elif k in NOT_IN_ID + ("backend", "deepspeed_config"):
            raise err(
                f"{where}.{k}: set by the sweep (run dirs live under root; backend comes from"
                " launcher)"
            )
        else:
            out[str(k)] = v
    return out


def _launcher(value, where: str, err, default: Launcher | None = None) -> Launcher:
    value = _mapping(value, where, err)
    fields = {f.name for f in dataclasses.fields(Launcher)}
    if set(value) - fields:
        raise err(
            f"{where}: unknown key {sorted(set(value) - fields)[0]!r}; known:"
            f" {', '.join(sorted(fields))}"
        )
    lau = dataclasses.replace(default or Launcher(), **value)
    if lau.kind not in LAUNCHERS:
        raise err(f"{where}.kind={lau.kind!r} is not one of {', '.join(LAUNCHERS)}")
    if not isinstance(lau.nproc, int) or lau.nproc < 1:
        raise err(f"{where}.nproc={lau.nproc!r} must be an integer >= 1")
    if lau.kind == "python" and lau.nproc != 1:
        raise err(
            f"{where}: kind python runs one process; use torchrun or deepspeed for"
            f" nproc={lau.nproc}"
        )
    if lau.kind == "deepspeed" and not lau.ds_config:
        raise err(f"{where}: kind deepspeed needs ds_config (e.g. ds_configs/zero3.json)")
    if lau.kind != "deepspeed" and lau.ds_config:
        raise err(f"{where}: ds_config is only for kind deepspeed")
    return lau


def _resources(value, where: str, err, default: Resources | None = None) -> Resources:
    value = _mapping(value, where, err)
    fields = {f.name: f for f in dataclasses.fields(Resources)}
    if set(value) - set(fields):
        raise err(
            f"{where}: unknown key {sorted(set(value) - set(fields))[0]!r}; known:"
            f" {', '.join(fields)}"
        )
    res = dataclasses.replace(default or Resources(), **value)
    for key in ("nodes", "cpus_per_task", "time_min", "array_parallelism"):
        v = getattr(res, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise err(f"{where}.{key}={v!r} must be an integer >= 1")
    for key in ("gpus_per_node", "signal_delay_s"):
        v = getattr(res, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise err(f"{where}.{key}={v!r} must be an integer >= 0")
    if not isinstance(res.mem_gb, (int, float)) or isinstance(res.mem_gb, bool) or res.mem_gb <= 0:
        raise err(f"{where}.mem_gb={res.mem_gb!r} must be a number > 0")
    for key in ("partition", "account", "qos"):
        v = getattr(res, key)
        if v is not None and not isinstance(v, str):
            raise err(f"{where}.{key}={v!r} must be a string")
    return res
