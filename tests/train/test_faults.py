"""Failure paths that need no launch: launcher/process-group disagreement, a full disk."""

import pytest

from beft.backends import dist
from beft.outputs import OutputDirError, RunDir


def test_world_size_disagreement_is_an_error(monkeypatch):
    # accelerate's FSDP on CPU: the launcher says 2 processes, the process group has 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist.dist, "get_world_size", lambda: 1)
    with pytest.raises(
        RuntimeError, match="launcher started 2 processes but the process group has 1"
    ):
        dist.init()


def test_full_disk_fails_early(monkeypatch, tmp_path):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1024))
    with pytest.raises(OutputDirError, match="MiB free"):
        RunDir(tmp_path / "run").prepare(overwrite=False, resume=False)


def test_finished_result_kept_unless_overwrite(tmp_path):
    run = RunDir(tmp_path)
    run.result.write_text("{}")
    with pytest.raises(OutputDirError, match="overwrite=true"):
        run.prepare(overwrite=False, resume=False)
    with pytest.raises(OutputDirError):
        run.prepare(overwrite=False, resume=True)  # a finished run is not resumed either
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "a.safetensors").write_text("old")
    run.prepare(overwrite=True, resume=False)  # moved aside, not deleted
    assert not run.result.exists() and not (tmp_path / "adapter").exists()
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "a.safetensors").write_text("new, half-written")
    (tmp_path / "config.yaml").write_text("new")
    assert run.restore_previous()  # the new run failed: the old one is back, whole
    assert (
        run.result.read_text() == "{}"
        and (tmp_path / "adapter" / "a.safetensors").read_text() == "old"
    )
    assert not (tmp_path / "config.yaml").exists() and not run.previous.exists()
    run.prepare(overwrite=True, resume=True)  # resume + overwrite: only result.json goes aside
    assert (tmp_path / "adapter").exists() and (run.previous / "result.json").exists()
    run.drop_previous()  # the new run finished
    assert not run.previous.exists()


def test_half_precision_choices(monkeypatch):
    """precision=auto is bf16 only where the GPU has it natively (V100 / T4 emulate it: fp32);
    precision=fp16 needs loss scaling, which only DeepSpeed applies (ZO has no gradients to scale).
    """
    import torch

    from beft.config import ConfigError, load_config

    assert dist.half_dtype("auto") is None or torch.cuda.is_available()  # CPU: fp32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native, want in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(
            torch.cuda,
            "is_bf16_supported",
            lambda including_emulation=True, n=native: n or including_emulation,
        )
        assert dist.half_dtype("auto") == want
    assert dist.half_dtype("fp16") == torch.float16 and dist.half_dtype("fp32") is None
    with pytest.raises(ConfigError, match="precision=fp16 needs loss scaling"):
        load_config(None, ["precision=fp16"])
    load_config(None, ["precision=fp16", "optim.kind=zo"])
    load_config(
        None, ["precision=fp16", "backend=deepspeed", "deepspeed_config=ds_configs/zero2.json"]
    )
