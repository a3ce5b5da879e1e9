import pytest

from beft.config import ConfigError, dump_config, load_config


def test_layers_defaults_recipe_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: rte\nlr: 0.5\noptim:\n  weight_decay: 0.1\n")
    cfg = load_config(
        recipe, ["lr=0.01", "optim.grad_accum=2", "bias_patterns=v=.*v$"], backend="fsdp"
    )
    assert (cfg.task, cfg.lr, cfg.optim.weight_decay, cfg.optim.grad_accum) == ("rte", 0.01, 0.1, 2)
    assert cfg.bias_patterns == {"v": ".*v$"} and cfg.backend == "fsdp"
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(again) == cfg  # a run's config.yaml repeats it exactly


@pytest.mark.parametrize(
    "args,match",
    [
        (["lrr=1"], "unknown config key 'lrr'; did you mean 'lr'"),
        (["optim.wd=1"], "unknown config key 'optim.wd'"),
        (["epochs=three"], "epochs='three' is not an integer"),
        (["resume=False2"], "not a boolean"),
        (["method=magic"], "method='magic' is not one of"),
        (["bias=qz"], "unknown bias target 'z'"),
        (["batch_size=0"], "batch_size=0 must be > 0"),
        (["regime"], "not key=value"),
        (["optim.warmup_ratio=1.5"], "warmup_ratio"),
    ],
)
def test_bad_values_are_clear_errors(args, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, args)


def test_bool_strings_parse_properly():
    assert load_config(None, ["resume=False"]).resume is False  # not the type=bool trap
    assert load_config(None, ["resume=true"]).resume is True


def test_quantized_fsdp_and_deepspeed_refused():
    with pytest.raises(ConfigError, match="--load_in_8bit with --fsdp"):
        load_config(None, [], backend="fsdp", quant="8bit")
    with pytest.raises(ConfigError, match="DeepSpeed"):
        load_config(None, [], backend="deepspeed", deepspeed_config="x.json", quant="8bit")


def test_missing_recipe():
    with pytest.raises(ConfigError, match="recipe .* does not exist"):
        load_config("/no/such.yaml")
