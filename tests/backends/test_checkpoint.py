"""Sharded loading's pieces: the model built without weights (beft.models.build_empty) equals
from_pretrained's once filled; reads of a rank's rows; checkpoints that do not match their config.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from beft.backends.checkpoint import Checkpoint, CheckpointMismatch, shard_rows
from beft.models import _set_tensor, build_empty, load_model, resolve
from tiny import ENCODERS, FAMILIES, save_tiny


def _fill(model, ckpt, keys):
    """What a backend does after sharding, here on one process: every meta tensor from the file."""
    with torch.no_grad():
        for n, p in list(model.named_parameters()):
            if p.is_meta:
                _set_tensor(model, n, ckpt.read(keys[n]).to(p.dtype), is_param=True)
    model.tie_weights()


@pytest.mark.parametrize("family", FAMILIES + [pytest.param("minilm", marks=pytest.mark.slow)])
def test_empty_build_then_fill_equals_from_pretrained(family, tmp_path):
    """Every tensor and buffer equal, the new head drawn exactly as from_pretrained draws it (same
    seed): 2 sharded ranks start where one process does. GPT-NeoX's checkpoint names its LM head
    embed_out (transformers renames it); MiniLM's lacks the 'bert.' prefix."""
    d = resolve("minilm") if family == "minilm" else save_tiny(family, tmp_path / family)
    arch = "encoder" if family in ENCODERS + ["minilm"] else "decoder"
    torch.manual_seed(3)
    ref, _, head_ref = load_model(str(d), arch, num_labels=3)
    torch.manual_seed(3)
    model, _, head, ckpt, keys = build_empty(str(d), arch, num_labels=3)
    big = [n for n, p in model.named_parameters() if p.is_meta]
    assert big and all(model.get_parameter(n).dim() >= 2 for n in big)  # nothing large was read
    _fill(model, ckpt, keys)
    assert head == head_ref
    want, got = ref.state_dict(), model.state_dict()
    assert sorted(want) == sorted(got)
    assert [k for k in want if not torch.equal(want[k], got[k])] == []
    bufs = dict(model.named_buffers())
    assert [k for k, b in ref.named_buffers() if not torch.equal(b, bufs[k])] == []


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (1, 2), (7, 4), (3, 4)])
def test_shard_rows_are_torch_chunk(n, world):
    chunks = torch.arange(n).chunk(world)
    for rank in range(world):
        a, b = shard_rows(n, world, rank)
        want = chunks[rank].tolist() if rank < len(chunks) else []
        assert list(range(a, b)) == want


def test_rows_read_from_a_multi_file_checkpoint(tmp_path):
    t = {"a": torch.randn(5, 3), "b": torch.randn(4), "c": torch.randn(2, 2)}
    save_file({"a": t["a"]}, str(tmp_path / "m-1.safetensors"))
    save_file({"b": t["b"], "c": t["c"]}, str(tmp_path / "m-2.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps(
            {"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-2.safetensors"}}
        )
    )
    ck = Checkpoint(tmp_path)
    assert ck.keys() == {"a", "b", "c"} and ck.shape("a") == (5, 3)
    assert torch.equal(ck.read("a", (3, 5)), t["a"][3:5]) and torch.equal(ck.read("b"), t["b"])
    assert ck.read("a", (5, 5)).shape == (0, 3)


def _broken(tmp_path, edit):
    d = save_tiny("llama", tmp_path / "llama")
    sd = load_file(str(d / "model.safetensors"))
    edit(sd)
    save_file(sd, str(d / "model.safetensors"))
    return d


def test_misshaped_tensor_is_named(tmp_path):
    name = "model.layers.1.mlp.up_proj.weight"
    d = _broken(tmp_path, lambda sd: sd.__setitem__(name, sd[name][:-1].clone()))
    with pytest.raises(
        CheckpointMismatch, match=rf"{name} .* has shape \[127, 64\].*expects \[128, 64\]"
    ):
        build_empty(str(d), "decoder")


def test_missing_base_tensor_is_named_not_trained_as_a_head(tmp_path):
    """from_pretrained would initialise it at random and beft would train it as a 'head'."""
    name = "model.layers.0.self_attn.v_proj.weight"
    d = _broken(tmp_path, lambda sd: sd.pop(name))
    with pytest.raises(CheckpointMismatch, match=rf"no tensor {name} "):
        build_empty(str(d), "decoder")


def test_no_safetensors_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointMismatch, match="holds no safetensors checkpoint"):
        Checkpoint(tmp_path)
