"""The backend a launch asks for, from the environment torchrun / accelerate give each rank (the
variables are those accelerate/utils/launch.py exports; the 2-rank runs are in
tests/train/test_launchers.py).
"""

import pytest

from beft.backends.choose import LaunchError, choose
from beft.config import load_config

TORCHRUN = {
    "WORLD_SIZE": "2",
    "RANK": "0",
    "LOCAL_RANK": "0",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}
ACC_FSDP = {
    **TORCHRUN,
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_OFFLOAD_PARAMS": "false",
    "FSDP_ACTIVATION_CHECKPOINTING": "false",
    "FSDP_CPU_RAM_EFFICIENT_LOADING": "true",
}
ACC_DS = {
    **TORCHRUN,
    "ACCELERATE_USE_DEEPSPEED": "true",
    "ACCELERATE_DEEPSPEED_CONFIG_FILE": "ds_configs/zero3.json",
}


def chosen(env, **fixed):
    cfg = load_config(None, [], **fixed)
    choose(cfg, env)
    cfg.validate()
    return cfg.backend, cfg.deepspeed_config


@pytest.mark.parametrize(
    "env,fixed,want",
    [
        ({}, {}, ("local", None)),  # python launch/train.py
        ({"WORLD_SIZE": "1"}, {}, ("local", None)),  # torchrun --nproc_per_node 1
        (TORCHRUN, {}, ("ddp", None)),  # torchrun, no --fsdp
        (TORCHRUN, {"backend": "fsdp"}, ("fsdp", None)),  # torchrun --fsdp
        (ACC_FSDP, {}, ("fsdp", None)),  # accelerate --use_fsdp
        (ACC_FSDP, {"backend": "fsdp"}, ("fsdp", None)),  # ... and --fsdp: they agree
        (ACC_DS, {}, ("deepspeed", "ds_configs/zero3.json")),  # accelerate --use_deepspeed
        (
            ACC_DS,
            {"backend": "deepspeed", "deepspeed_config": "ds_configs/zero3.json"},
            ("deepspeed", "ds_configs/zero3.json"),
        ),
        ({**TORCHRUN, "ACCELERATE_USE_FSDP": "false"}, {}, ("ddp", None)),  # accelerate --multi_gpu
    ],
)
def test_backend_from_launcher_environment(env, fixed, want):
    assert chosen(env, **fixed) == want


def test_accelerate_fsdp_activation_checkpointing_is_honoured():
    cfg = load_config(None, [])
    choose(cfg, {**ACC_FSDP, "FSDP_ACTIVATION_CHECKPOINTING": "true"})
    assert cfg.activation_checkpointing


@pytest.mark.parametrize(
    "env,fixed,words",
    [
        # accelerate's simple launcher (no GPU, no --multi_gpu) starts one process for
        # --num_processes 2
        (
            {"ACCELERATE_USE_CPU": "False", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
            {},
            "--multi_gpu",
        ),
        ({**ACC_DS, "ACCELERATE_DEEPSPEED_CONFIG_FILE": "none"}, {}, "--deepspeed_config_file"),
        ({**ACC_FSDP, "FSDP_OFFLOAD_PARAMS": "true"}, {}, "fsdp_offload_params"),
        (
            ACC_FSDP,
            {"backend": "deepspeed", "deepspeed_config": "ds_configs/zero3.json"},
            "accelerate launched fsdp",
        ),
        (
            ACC_DS,
            {"backend": "deepspeed", "deepspeed_config": "ds_configs/zero2.json"},
            "give the JSON once",
        ),
    ],
)
def test_conflicting_or_unsupported_launch_is_one_line_error(env, fixed, words):
    with pytest.raises(LaunchError, match=words) as e:
        chosen(env, **fixed)
    assert "\n" not in str(e.value)
