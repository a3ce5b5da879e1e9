"""Adapters and exports record the base model as the user named it (not this machine's resolved
folder), with the sha256 of its config.json; export warns when a base under that name differs."""

import json

import pytest

from beft.bias.adapter import read_adapter
from beft.commands.export import main as export
from beft.config import load_config
from beft.models import resolve
from beft.train import Trainer
from paths import DATA_DIR

ARGS = [
    "task=sst2",
    "bias=v",
    "data.n_train=16",
    "data.n_eval=16",
    "max_steps=2",
    "batch_size=8",
    "data.max_length=32",
    "threads=1",
    f"data_dir={DATA_DIR}",
]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    out = tmp_path_factory.mktemp("portable") / "run"
    Trainer(load_config(None, ["model=minilm", f"output_dir={out}", *ARGS])).run()
    return out


@pytest.mark.slow  # trains the real MiniLM (minilm_run)
def test_adapter_records_the_short_name_and_the_config_hash(minilm_run):
    import hashlib
    from pathlib import Path

    for name in ("adapter", "adapter_best"):
        _, meta = read_adapter(minilm_run / name)
        assert meta["base_model"] == "minilm"  # travels: resolves on any machine
        assert meta["base_model_path"] == resolve("minilm")  # where it was found here
        config = (Path(resolve("minilm")) / "config.json").read_bytes()
        assert meta["base_config_sha256"] == hashlib.sha256(config).hexdigest()


@pytest.mark.slow
def test_peft_export_names_the_base_as_given(minilm_run, tmp_path, capsys):
    assert export([str(minilm_run), f"peft={tmp_path / 'peft'}"]) == 0
    cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "minilm"
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_different_base_under_the_recorded_name_warns(minilm_run, tmp_path, capsys):
    from tiny import save_tiny

    other = save_tiny("bert", tmp_path / "other")  # same family, other config: a different model
    with pytest.raises(
        Exception
    ):  # its shapes cannot hold MiniLM's biases: refused after the warning
        export([str(minilm_run), f"peft={tmp_path / 'peft'}", f"base={other}"])
    assert "config.json differs from the one the adapter was trained on" in capsys.readouterr().err
