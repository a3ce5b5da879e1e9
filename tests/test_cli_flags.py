"""Contradictory launcher flags and keys are one line naming both (exit 2); equivalent spellings
are recorded in one form (issue 17 item 6)."""

import pytest
import yaml

from beft.cli import run
from beft.commands.train import parse
from beft.config import load_config
from beft.sweep.spec import run_id
from paths import ROOT

ZERO2 = str(ROOT / "ds_configs" / "zero2.json")


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--load_in_8bit", "--load_in_4bit"], ["--load_in_8bit", "--load_in_4bit"]),
        (["--load_in_4bit", "quant=8bit"], ["quant=8bit", "--load_in_4bit"]),
        (["--config", ZERO2, "--fsdp"], ["--config", "--fsdp"]),
        (["--fsdp", "--config", ZERO2], ["--fsdp", "--config"]),
        (["--fsdp", f"deepspeed_config={ZERO2}"], ["deepspeed_config=", "--fsdp"]),
        (["--config", ZERO2, "backend=fsdp"], ["backend=fsdp", "--config"]),
        ([f"deepspeed_config={ZERO2}"], ["deepspeed_config=", "backend=local"]),
        (["backend=fsdp", f"deepspeed_config={ZERO2}"], ["deepspeed_config=", "backend=fsdp"]),
    ],
)
def test_contradiction_is_one_line_naming_both(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        run(lambda a: parse(a) and 0, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "contradict" in err, err
    assert all(w in err for w in words), err


def test_same_flag_twice_and_agreeing_key_are_fine():
    assert parse(["--load_in_8bit", "--load_in_8bit", "quant=8bit"]).quant == "8bit"
    cfg = parse(["--config", ZERO2, "backend=deepspeed", "--local_rank=0"])
    assert (cfg.backend, cfg.deepspeed_config) == ("deepspeed", ZERO2)


def test_launcher_flag_replaces_the_recipes_backend(tmp_path):
    """A DeepSpeed run's config.yaml relaunched with --fsdp: FSDP, and no DeepSpeed config
    recorded."""
    recipe = tmp_path / "config.yaml"
    recipe.write_text(
        yaml.safe_dump(
            load_config(overrides={"backend": "deepspeed", "deepspeed_config": ZERO2}).to_dict()
        )
    )
    cfg = parse(["--recipe", str(recipe), "--fsdp"])
    assert (cfg.backend, cfg.deepspeed_config) == ("fsdp", None)
    assert parse(["--recipe", str(recipe)]).backend == "deepspeed"


@pytest.mark.parametrize(
    "given,recorded",
    [("vv", "v"), ("V", "v"), ("v,q", "qv"), ("vqv", "qv"), ("bitfit", "all"), ("ALL", "all")],
)
def test_bias_is_recorded_in_one_spelling(given, recorded):
    cfg = load_config(overrides={"bias": given})
    assert cfg.bias == recorded
    assert run_id(cfg.to_dict()) == run_id(load_config(overrides={"bias": recorded}).to_dict())
