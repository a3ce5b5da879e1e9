"""Multi-rank launchers started inside a SLURM allocation: torchrun (FSDP2) and deepspeed
(ZeRO-2)."""

import json

import pytest
import yaml

from beft.sweep import jobs as J
from beft.sweep.spec import load_spec
from sweep_helpers import sweep, tiny_spec, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.dist]


@pytest.mark.parametrize(
    "launcher,backend",
    [
        ({"kind": "torchrun", "nproc": 2}, "fsdp"),
        ({"kind": "deepspeed", "nproc": 2, "ds_config": "ds_configs/zero2.json"}, "deepspeed"),
    ],
)
def test_two_rank_run_inside_the_allocation(launcher, backend, slurm, tiny_bert, tmp_path):
    path = tiny_spec(
        tmp_path,
        tiny_bert,
        name=backend,
        tasks=("sst2",),
        targets=("v",),
        seeds=(0,),
        **{"checkpoint.every_steps": 0},
    )
    spec = yaml.safe_load(path.read_text())
    spec["launcher"] = launcher
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    loaded = load_spec(path)
    r = sweep("submit", path, "--executor", "slurm")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: J.counts(J.run_states(loaded))["done"] == 1, 600, "the 2-rank run", every=2)
    res = json.loads((loaded.runs[0].output_dir / "result.json").read_text())
    assert res["world_size"] == 2 and res["backend"] == backend
