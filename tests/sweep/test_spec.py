"""Spec validation, run-id stability, dry run of the shipped specs (no SLURM needed)."""

import re
from pathlib import Path

import pytest
import yaml

from beft.sweep.spec import SpecError, load_spec, parse_spec, run_id
from paths import ROOT
from sweep_helpers import sweep

SPECS = ROOT / "slurm" / "sweeps"
GOOD = {
    "name": "t",
    "grid": {"model": ["m"], "task": ["sst2", "rte"], "bias": ["q", "v"], "seed": [0, 1]},
    "config": {"lr": 1e-3},
}


def spec(tmp_path, **changes):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    return parse_spec(data, Path("t.yaml"), root=tmp_path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"grids": {}}, "unknown key 'grids'"),
        ({"grid": None}, "'grid' must be a non-empty mapping"),
        ({"grid": {"model": ["m"], "task": []}}, "grid.task must be a non-empty list"),
        ({"grid": {"model": ["m"], "task": ["sst2", "sst2"]}}, "grid.task lists a value twice"),
        ({"grid": {"model": ["m"], "task": ["sst3"]}}, "unknown task 'sst3'"),
        ({"grid": {"model": ["m"], "task": ["sst2"], "output_dir": ["x"]}}, "set by the sweep"),
        ({"config": {"lr": -1}}, "lr=-1.0 must be > 0"),
        ({"config": {"lrr": 1}}, "unknown config key 'lrr'; did you mean 'lr'?"),
        (
            {"grid": {"model": ["m"], "task": ["sst2"], "bias": ["z"]}},
            "run model=m/task=sst2/bias=z: bias='z'",
        ),
        ({"config": {"bias": "v"}}, "config.bias is also a grid axis"),
        ({"per_task": {"cola": {"lr": 1}}}, "per_task.cola: 'cola' is not a task of this sweep"),
        ({"per_task": {"rte": {"seed": 3}}}, "per_task.rte sets grid axis 'seed'"),
        (
            {"launcher": {"kind": "mpirun"}},
            "launcher.kind='mpirun' is not one of python, torchrun, deepspeed",
        ),
        ({"launcher": {"kind": "deepspeed", "nproc": 2}}, "kind deepspeed needs ds_config"),
        ({"launcher": {"kind": "python", "nproc": 2}}, "use torchrun or deepspeed"),
        ({"slurm": {"gpus": 1}}, "slurm: unknown key 'gpus'"),
        ({"slurm": {"time_min": 0}}, "slurm.time_min=0 must be an integer >= 1"),
        ({"slurm": {"nodes": 2}}, "slurm.nodes=2 needs launcher kind torchrun or deepspeed"),
        ({"slurm": {"nodes": 0}}, "slurm.nodes=0 must be an integer >= 1"),
        ({"slurm": {"mem_gb": "lots"}}, "slurm.mem_gb='lots' must be a number > 0"),
        ({"collect": {"metric": "worst"}}, "collect takes metric"),
    ],
)
def test_validation_errors_are_one_line(tmp_path, changes, message):
    with pytest.raises(SpecError) as e:
        spec(tmp_path, **changes)
    assert message in str(e.value), str(e.value)
    assert str(e.value).startswith("t.yaml: ") and "\n" not in str(e.value)


def test_cli_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {model: [m], task: [sst2]}\nslurm: {partition: 3}\n")
    r = sweep("submit", bad, "--executor", "slurm", "--dry-run")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {bad}: slurm.partition=3 must be a string"]


def test_run_ids_stable_and_distinct(tmp_path):
    a, b = spec(tmp_path / "a"), spec(tmp_path / "b")
    assert len(a.runs) == 8 and len({r.run_id for r in a.runs}) == 8
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]  # root does not enter the id
    assert all(r.output_dir == tmp_path / "a" / r.run_id for r in a.runs)
    assert a.runs[0].run_id == "m-sst2-q-low-s0-" + run_id(a.runs[0].config)[-10:]
    # reordering the grid or the YAML keys keeps ids; changing a value changes them
    reordered = dict(
        GOOD, grid={"seed": [1, 0], "bias": ["v", "q"], "task": ["rte", "sst2"], "model": ["m"]}
    )
    c = parse_spec(reordered, Path("t.yaml"), root=tmp_path)
    assert {r.run_id for r in c.runs} == {r.run_id for r in a.runs}
    # a run made before beft had some key (here: one left at its default) keeps its id; a value
    # that differs from the default enters the id
    cfg = a.runs[0].config
    older = dict(cfg, data={k: v for k, v in cfg["data"].items() if k != "eval_batch_size"})
    assert run_id(older) == a.runs[0].run_id
    assert run_id(dict(cfg, data=dict(cfg["data"], eval_batch_size=3))) != a.runs[0].run_id
    d = spec(tmp_path, config={"lr": 2e-3})
    assert not {r.run_id for r in d.runs} & {r.run_id for r in a.runs}
    # per-task override lands in that task's runs only
    e = spec(tmp_path, per_task={"rte": {"lr": 5e-2, "data": {"max_length": 64}}})
    for r in e.runs:
        assert r.config["lr"] == (5e-2 if r.config["task"] == "rte" else 1e-3)
        assert r.config["data"]["max_length"] == (64 if r.config["task"] == "rte" else 128)
        assert r.config["resume"] is True


TABLE5_LR = {
    "sst2": 1e-3,
    "rte": 1e-3,
    "cb": 1e-2,
    "boolq": 1e-3,
    "wsc": 1e-2,
    "wic": 1e-3,
    "multirc": 1e-3,
    "copa": 1e-4,
    "record": 1e-4,
    "squad": 1e-3,
    "drop": 1e-3,
}


def test_table5_dry_run_lists_330_runs_with_per_task_lrs(tmp_path):
    r = sweep(
        "submit",
        SPECS / "table5.yaml",
        "--executor",
        "slurm",
        "--dry-run",
        "--root",
        tmp_path / "t5",
    )
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if re.match(r"^opt_\S+  model=", ln)]
    assert len(lines) == 330 and "330 runs, 330 to submit" in r.stdout
    seen = set()
    for ln in lines:
        kv = dict(re.findall(r"(\w+)=(\S+)", ln))
        assert float(kv["lr"]) == TABLE5_LR[kv["task"]], ln
        seen.add((kv["model"], kv["task"], kv["target"], kv["seed"]))
    assert len(seen) == 330
    assert "#SBATCH --array=0-164%32" in r.stdout and "#SBATCH --gpus-per-node=1" in r.stdout
    assert (
        "#SBATCH --signal=USR2@180" in r.stdout and "#SBATCH --mem=98304M" in r.stdout
    )  # opt-6.7b: 96 GB
    assert not (tmp_path / "t5").exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    "name, n", [("table1", 360), ("table3", 180), ("table6", 45), ("appendix_c8", 90)]
)
def test_shipped_specs_load(name, n, tmp_path):
    s = load_spec(SPECS / f"{name}.yaml", root=tmp_path)
    assert len(s.runs) == n
    assert {r.target for r in s.runs} == {"q", "k", "v"}
