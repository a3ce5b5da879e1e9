"""launch/plan.py: every bad option is one line on stderr naming the key, exit 2, no traceback."""

import importlib.util
import json

import pytest

from beft.cli import run
from inprocess import run_main
from paths import ROOT

_spec = importlib.util.spec_from_file_location("launch_plan", ROOT / "launch" / "plan.py")
PLAN = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(PLAN)


def _plan(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        run(PLAN.main, ["model=minilm", *argv])
    return e.value.code, capsys.readouterr()


@pytest.mark.parametrize(
    "key,argv",
    [
        ("batch", ["batch=-4"]),
        ("batch", ["batch=0"]),
        ("seq", ["seq=0"]),
        ("gpus", ["gpus=0"]),
        ("batch", ["batch=two"]),
        ("zero", ["zero=7"]),
        ("zero", ["zero=x"]),
        ("fsdp", ["fsdp=maybe"]),
        ("json", ["json=maybe"]),
        ("kv_cache", ["kv_cache=maybe"]),
        ("ckpt", ["ckpt=maybe"]),
        ("activation_checkpointing", ["activation_checkpointing=2"]),
        ("zero", ["zero=3", "fsdp=true"]),
        ("zero", ["zero=2", "fsdp=true"]),
        ("r", ["method=peft_lora", "r=0"]),
        ("targets", ["method=peft_lora", "targets=xyz"]),
        ("r", ["method=lora", "r=8"]),
        ("targets", ["method=vera", "targets=qv"]),
        ("bias", ["bias=xyz"]),
        ("method", ["method=foo"]),
        ("optim", ["optim=foo"]),
        ("zo_update", ["zo_update=foo"]),
        ("zo_head", ["zo_head=x"]),
        ("offload", ["offload=foo"]),
        ("gpu", ["gpu=foo"]),
        ("dtype", ["dtype=fp8"]),
        ("kernel", ["kernel=x"]),
        ("ckpt", ["optim=zo", "ckpt=true"]),
        ("bias", ["bias=auto"]),
    ],
)
def test_bad_option_is_one_line_naming_the_key(capsys, key, argv):
    code, out = _plan(capsys, *argv)
    assert code == 2 and out.out == ""
    assert len(out.err.splitlines()) == 1 and out.err.startswith(f"error: {key}="), out.err


def test_unknown_model_names_the_builtins_not_the_hub():
    out = run_main(PLAN.main, ["model=beft-no-such-model"])
    assert (
        out.returncode == 2 and len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    )
    assert (
        "model='beft-no-such-model' is neither a built-in" in out.stderr
        and "llama2-7b" in out.stderr
    )
    assert "huggingface.co" not in out.stderr


def test_targets_parse_like_the_training_config(capsys):
    def trainable(*argv):
        code, out = _plan(capsys, "json=true", *argv)
        assert code == 0, out.err
        return json.loads(out.out)["trainable"]

    assert trainable("bias=q,v") == trainable("bias=qv") > trainable("bias=v")
    assert trainable("method=peft_lora", "targets=all") == trainable(
        "method=peft_lora", "targets=qkvo"
    )
    assert trainable("method=peft_lora", "targets=all") > trainable(
        "method=peft_lora", "targets=qv"
    )


def test_method_means_what_it_means_in_training(capsys):
    """method=lora is LoRA on the bias vectors (training's meaning): planned as the bias it
    reparametrises, far below LoRA on the weights (method=peft_lora, whose r follows peft.lora_r).
    """

    def trainable(*argv):
        code, out = _plan(capsys, "json=true", *argv)
        assert code == 0, out.err
        return json.loads(out.out)["trainable"]

    assert trainable("method=lora") == trainable("method=bias", "bias=v")
    assert trainable("method=lora") < trainable("method=peft_lora") / 10
    assert (
        trainable("method=peft_lora", "peft.lora_r=16")
        == trainable("method=peft_lora", "r=16")
        > trainable("method=peft_lora", "r=8")
        == trainable("method=peft_lora")
    )
