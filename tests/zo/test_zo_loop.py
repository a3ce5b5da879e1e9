"""optim.kind=zo through the real training loop and launchers."""
import json

import pytest

from beft.config import ConfigError, load_config
from train_helpers import adapter, base_args, launch, max_diff

ZO = {"optim.kind": "zo", "zo.update": "adam", "lr": "1e-2"}


def test_zo_decoder_trains_only_biases_and_is_deterministic(tiny_dirs, need_data, tmp_path):
    for name in ("a", "b"):
        p = launch(base_args(tiny_dirs["llama"], tmp_path / name, **ZO))
        assert p.returncode == 0, p.stderr[-3000:]
    a, b = adapter(tmp_path / "a"), adapter(tmp_path / "b")
    assert max_diff(a, b) == 0.0                       # same seed, same z, same run
    assert set(a) == {f"model.layers.{i}.self_attn.v_proj.bias" for i in range(2)}
    assert all(t.abs().max() > 0 for t in a.values())  # the added zero biases moved
    logs = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["grad_norm"] > 0 for r in logs if "grad_norm" in r)


def test_zo_encoder_head_first_order(tiny_dirs, need_data, tmp_path):
    p = launch(base_args(tiny_dirs["bert"], tmp_path / "e", **ZO))
    assert p.returncode == 0, p.stderr[-3000:]
    a = adapter(tmp_path / "e")
    assert "classifier.weight" in a and a["bert.encoder.layer.0.attention.self.value.bias"].abs().max() > 0


def test_zo_kill_and_resume_bitwise(tiny_dirs, need_data, tmp_path):
    args = lambda out: base_args(tiny_dirs["llama"], out, **ZO, **{"checkpoint.every_steps": 3, "resume": "true"})
    assert launch(args(tmp_path / "a")).returncode == 0
    assert launch(args(tmp_path / "b"), env={"BEFT_KILL_AFTER_STEP": "11"}).returncode != 0
    p = launch(args(tmp_path / "b"))
    assert p.returncode == 0 and "resumed from step 9" in p.stdout
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "b")) == 0.0


@pytest.mark.slow
@pytest.mark.dist
def test_zo_fsdp_two_ranks_draw_the_same_z(tiny_dirs, need_data, tmp_path):
    assert launch(base_args(tiny_dirs["llama"], tmp_path / "one", **ZO)).returncode == 0
    p = launch(base_args(tiny_dirs["llama"], tmp_path / "two", **ZO), launcher="fsdp")
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    # (L+ - L-) / 2eps magnifies the rounding of a 2-rank mean loss by 1/(2 eps) = 500
    assert max_diff(adapter(tmp_path / "one"), adapter(tmp_path / "two")) <= 1e-4


def test_activation_checkpointing_same_result(tiny_dirs, need_data, tmp_path):
    assert launch(base_args(tiny_dirs["llama"], tmp_path / "a")).returncode == 0
    p = launch(base_args(tiny_dirs["llama"], tmp_path / "b", activation_checkpointing="true"))
    assert p.returncode == 0, p.stderr[-3000:]
    assert max_diff(adapter(tmp_path / "a"), adapter(tmp_path / "b")) <= 1e-6


def test_zo_config_errors():
    with pytest.raises(ConfigError, match="DeepSpeed keeps its own fp32"):
        load_config(None, ["optim.kind=zo"], backend="deepspeed", deepspeed_config="x.json")
    with pytest.raises(ConfigError, match="method=bias or bitfit"):
        load_config(None, ["optim.kind=zo", "method=full"])
    with pytest.raises(ConfigError, match="zo.update='x' is not one of"):
        load_config(None, ["optim.kind=zo", "zo.update=x"])
