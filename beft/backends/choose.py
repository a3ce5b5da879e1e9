"""Which backend a launch asks for, read from the launcher's environment (torchrun, accelerate).

    torchrun --nproc_per_node 2 launch/train.py ...                   -> ddp
    accelerate launch --config_file configs/accelerate/ddp.yaml ...   -> ddp   (MULTI_GPU: torchrun)
    accelerate launch --config_file configs/accelerate/fsdp.yaml ...  -> fsdp  (ACCELERATE_USE_FSDP)
    accelerate launch --use_deepspeed --deepspeed_config_file ds_configs/zero3.json ... -> deepspeed

The launcher flags (--fsdp, --config FILE) win where they agree with the environment; backend=local
(the default) means "nothing asked": several ranks then train with DDP. accelerate's own variable
names are read from accelerate/utils/launch.py (prepare_multi_gpu_env, prepare_deepspeed_cmd_env,
prepare_simple_launcher_cmd_env)."""

from __future__ import annotations

import contextlib
import os


class LaunchError(ValueError):
    """The launch and the config disagree: one line for the user, before any model loads."""


def _true(name: str, env) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


def accelerate_asks(env=os.environ) -> tuple[str | None, str | None]:
    """(backend, DeepSpeed JSON) that accelerate's environment asks for; (None, None) outside it."""
    if _true("ACCELERATE_USE_DEEPSPEED", env):
        path = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
        if path in ("", "none"):
            raise LaunchError(
                "accelerate launched DeepSpeed without a JSON config: add --deepspeed_config_file "
                "ds_configs/zero3.json (or deepspeed_config_file in the accelerate config, see "
                "configs/accelerate/deepspeed_zero3.yaml)"
            )
        return "deepspeed", path
    if _true("ACCELERATE_USE_FSDP", env):
        if _true("FSDP_OFFLOAD_PARAMS", env):
            raise LaunchError(
                "accelerate's fsdp_offload_params=true: beft's FSDP2 backend keeps parameters on"
                " the device; drop it, or offload with DeepSpeed (ds_configs/zero3_offload.json)"
            )
        return "fsdp", None
    return None, None


@contextlib.contextmanager
def transformers_builds_every_rank():
    """accelerate's fsdp_cpu_ram_efficient_loading tells transformers that FSDP1 will broadcast rank
    0's
    weights: on the other ranks it then skips initialising the new head and the computed buffers
    (left as uninitialised memory). beft's FSDP2 backend reads each rank's shards itself, so while
    it
    builds the model, transformers must not act on that setting."""
    saved = os.environ.pop("FSDP_CPU_RAM_EFFICIENT_LOADING", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = saved


def one_process_from_accelerate(env=os.environ) -> bool:
    """accelerate's simple launcher (its choice on a machine without GPUs unless told --multi_gpu)
    exports MASTER_ADDR / MASTER_PORT for --num_processes > 1 but starts a single process."""
    return "ACCELERATE_USE_CPU" in env and "WORLD_SIZE" not in env and "MASTER_PORT" in env


def choose(cfg, env=os.environ) -> None:
    """Set cfg.backend (and cfg.deepspeed_config) from the launch; cfg.validate() follows."""
    if one_process_from_accelerate(env):
        raise LaunchError(
            "accelerate launch started one process although more were asked: without GPUs it needs "
            "--multi_gpu (torchrun, gloo) or a config file: accelerate launch --config_file "
            "configs/accelerate/ddp.yaml launch/train.py ..."
        )
    asked, ds_json = accelerate_asks(env)
    if asked is not None:
        if cfg.backend not in ("local", asked):
            raise LaunchError(
                f"backend={cfg.backend} (launcher flag) but accelerate launched {asked}: "
                "use one of the two"
            )
        cfg.backend = asked
        if (
            ds_json
            and cfg.deepspeed_config
            and os.path.abspath(ds_json) != os.path.abspath(cfg.deepspeed_config)
        ):
            raise LaunchError(
                f"--config {cfg.deepspeed_config} but accelerate's deepspeed_config_file is "
                f"{ds_json}: give the JSON once"
            )
        cfg.deepspeed_config = cfg.deepspeed_config or ds_json
        if asked == "fsdp" and _true("FSDP_ACTIVATION_CHECKPOINTING", env):
            cfg.activation_checkpointing = True
    elif cfg.backend == "local" and int(env.get("WORLD_SIZE", "1")) > 1:
        cfg.backend = "ddp"


def make_backend(cfg):
    """The backend the launch and the config ask for (beft/backends/protocol.py's Backend)."""
    choose(cfg)  # the launcher's environment (torchrun, accelerate) may pick ddp / fsdp / deepspeed
    cfg.validate()
    if cfg.backend == "ddp":
        from .ddp import DDPBackend

        return DDPBackend(cfg)
    if cfg.backend == "deepspeed":
        from .deepspeed import DeepSpeedBackend

        return DeepSpeedBackend(cfg)
    if cfg.backend == "fsdp":
        from .fsdp import FSDPBackend

        return FSDPBackend(cfg)
    from .local import LocalBackend

    return LocalBackend(cfg)
