"""A DeepSpeed config is checked before anything loads: a file that is not a JSON object, or a run
without the deepspeed launcher, is a one-line error (exit 2), not an AttributeError or DeepSpeed's
"No module named 'mpi4py'" after the model has loaded."""

import json

import pytest

from beft.backends.ds_config import LAUNCHER_ENV, check_launcher, read
from beft.cli import run
from beft.config import load_config
from paths import ROOT

ZERO3 = str(ROOT / "ds_configs" / "zero3.json")
LAUNCHED = {
    "RANK": "0",
    "WORLD_SIZE": "2",
    "LOCAL_RANK": "0",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


@pytest.mark.parametrize(
    "content,words",
    [
        ([{"zero_optimization": {"stage": 2}}], "holds a JSON list, not an object"),
        ("zero2", "holds a JSON str"),
        ({"zero_optimization": [2]}, "zero_optimization must be an object"),
    ],
)
def test_ds_config_not_an_object(content, words, tmp_path):
    p = tmp_path / "ds.json"
    p.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=words) as e:
        read(str(p))
    assert str(p) in str(e.value)


def test_ds_config_not_text(tmp_path):
    p = tmp_path / "ds.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="cannot be read|not valid JSON"):
        read(str(p))


def test_launcher_env():
    check_launcher(ZERO3, LAUNCHED)  # deepspeed / torchrun
    check_launcher(ZERO3, {"OMPI_COMM_WORLD_RANK": "0"})  # mpirun: DeepSpeed's MPI discovery
    with pytest.raises(ValueError, match="needs the deepspeed launcher") as e:
        check_launcher(ZERO3, {})
    assert "deepspeed --num_gpus N" in str(e.value) and "leave out --config" in str(e.value)


def _trainer(tmp_path, ds_config):
    from beft.train import Trainer

    cfg = load_config(
        None,
        [f"output_dir={tmp_path / 'run'}", "model=/nonexistent/model"],
        backend="deepspeed",
        deepspeed_config=ds_config,
    )
    return Trainer(cfg)


def test_plain_python_with_ds_config_refused_before_loading(tmp_path, monkeypatch, capsys):
    for k in LAUNCHER_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(SystemExit) as ex:
        run(lambda argv: _trainer(tmp_path, ZERO3).setup(), [])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the deepspeed launcher" in err[0] and "mpi4py" not in err[0]
    assert not (tmp_path / "run").exists()  # nothing written


def test_list_ds_config_refused_before_loading(tmp_path, monkeypatch):
    for k, v in LAUNCHED.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("WORLD_SIZE", "1")
    p = tmp_path / "ds.json"
    p.write_text("[]")
    with pytest.raises(ValueError, match="not an object"):
        _trainer(tmp_path, str(p)).setup()
    assert not (tmp_path / "run").exists()
