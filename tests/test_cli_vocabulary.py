"""One vocabulary: the planner and the inventory take the training config's keys and flags (and a
run's config.yaml); sweep options are key=value too, their flag spellings still work."""

import json

import pytest

from beft.cli import run
from beft.commands import plan
from beft.config import dump_config, load_config
from beft.sweep.cli import flags, parser
from paths import ROOT

ZERO3 = str(ROOT / "ds_configs" / "zero3.json")
OFFLOAD = str(ROOT / "ds_configs" / "zero3_offload.json")


def _plan(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        run(plan.main, [*argv, "json=true"])
    o = capsys.readouterr()
    return (e.value.code, o.err.strip()) if e.value.code else json.loads(o.out)


@pytest.mark.parametrize(
    "training,planner",
    [
        (
            [
                "model=llama2-7b",
                "bias=v",
                "precision=bf16",
                "batch_size=32",
                "data.max_length=256",
                "gpus=8",
                "--config",
                ZERO3,
            ],
            ["model=llama2-7b", "bias=v", "dtype=bf16", "batch=4", "seq=256", "gpus=8", "zero=3"],
        ),
        (
            ["model=opt-1.3b", "--load_in_8bit", "batch_size=8", "optim.grad_accum=2"],
            ["model=opt-1.3b", "dtype=8bit", "batch=4"],
        ),
        (
            [
                "model=llama2-7b",
                "--fsdp",
                "gpus=2",
                "batch_size=4",
                "optim.kind=zo",
                "zo.update=adam",
            ],
            ["model=llama2-7b", "fsdp=true", "gpus=2", "batch=2", "optim=zo", "zo_update=adam"],
        ),
        (
            ["model=llama2-7b", f"--config={OFFLOAD}", "method=peft_lora", "peft.lora_r=4"],
            ["model=llama2-7b", "zero=3", "offload=all", "method=peft_lora", "r=4", "targets=qv"],
        ),
    ],
)
def test_training_keys_plan_as_the_planners_own(capsys, training, planner):
    assert _plan(capsys, *training) == _plan(capsys, *planner)


def test_a_runs_config_yaml_is_a_recipe(capsys, tmp_path):
    cfg = load_config(
        overrides={
            "model": "minilm",
            "bias": "qv",
            "batch_size": 16,
            "data.max_length": 64,
            "precision": "fp32",
            "activation_checkpointing": "true",
        }
    )
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    got = _plan(capsys, "--recipe", str(tmp_path / "config.yaml"), "gpus=2")
    assert got == _plan(
        capsys,
        "model=minilm",
        "method=bias",
        "bias=qv",
        "batch=8",
        "seq=64",
        "dtype=fp32",
        "activation_checkpointing=true",
        "gpus=2",
    )
    assert got != _plan(
        capsys, "--recipe", str(tmp_path / "config.yaml"), "gpus=2", "bias=v"
    )  # keys override


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["batch=4", "batch_size=32"],
            "batch=4 and batch_size say the same thing; give one of them",
        ),
        (
            ["dtype=fp32", "--load_in_8bit"],
            "dtype=fp32 and quant say the same thing; give one of them",
        ),
        (["zero=2", "--config", ZERO3], "zero=2 and backend say the same thing; give one of them"),
        (
            ["batch_size=6", "gpus=4"],
            "batch_size=6 is not divisible by gpus=4 x optim.grad_accum=1",
        ),
        (["--fsdp", "--config", ZERO3], "--fsdp and --config contradict each other"),
    ],
)
def test_contradictions_are_one_line(capsys, argv, message):
    code, err = _plan(capsys, "model=minilm", *argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {message}"), err


def test_sweep_takes_key_value_and_its_flags():
    new = flags(["executor=local", "root=/r", "dry_run=true", "out=/o", "figures=false"])
    assert new == [
        "--executor",
        "local",
        "--root",
        "/r",
        "--dry-run",
        "--out",
        "/o",
        "--no-figures",
    ]
    a = parser().parse_args(
        ["submit", "s.yaml", *flags(["executor=slurm", "dry_run=false", "root=/r"])]
    )
    b = parser().parse_args(["submit", "s.yaml", "--executor", "slurm", "--root", "/r"])
    assert a == b and flags(["spec=s.yaml", "--root", "/r"]) == ["s.yaml", "--root", "/r"]
    from beft.cli import UsageError

    with pytest.raises(
        UsageError, match="unknown option 'executer'; options: executor, root, out, spec"
    ):
        flags(["executer=local"])
    with pytest.raises(UsageError, match="dry_run='maybe' is not a boolean"):
        flags(["dry_run=maybe"])
