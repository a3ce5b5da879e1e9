"""A damaged or edited adapter file is a one-line error naming it (exit 2 from the CLIs), never a
traceback, and never exported as if it were sound."""

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from beft.bias import apply_bias
from beft.bias.adapter import ADAPTER_FILE, AdapterMismatchError, read_adapter, save_adapter
from beft.cli import run
from tiny import tiny_model


@pytest.fixture
def adapter_file(tmp_path):
    model = tiny_model("bert")
    return save_adapter(tmp_path / "a", apply_bias(model, "v", head=["classifier"]), model)


def _rewrite_meta(path, edit):
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["beft"])
    raw = edit(meta, tensors)
    save_file(
        tensors, str(path), metadata={"beft": raw if isinstance(raw, str) else json.dumps(raw)}
    )


def _truncate(p):
    p.write_bytes(p.read_bytes()[:-100])


def _garble_header(p):
    b = bytearray(p.read_bytes())
    b[8:40] = b"\xff" * 32
    p.write_bytes(bytes(b))


def _shape(meta, tensors):
    name = next(iter(meta["shapes"]))
    meta["shapes"][name] = [meta["shapes"][name][0] + 1]
    return meta


CASES = {
    "truncated": (_truncate, "truncated or corrupt"),
    "garbled header": (_garble_header, "truncated or corrupt"),
    "empty": (lambda p: p.write_bytes(b""), "truncated or corrupt"),
    "metadata not JSON": (lambda p: _rewrite_meta(p, lambda m, t: "{not json"), "not JSON"),
    "metadata a list": (lambda p: _rewrite_meta(p, lambda m, t: [1, 2]), "not a JSON object"),
    "no family": (
        lambda p: _rewrite_meta(p, lambda m, t: {k: v for k, v in m.items() if k != "family"}),
        "'family'",
    ),
    "shapes disagree": (lambda p: _rewrite_meta(p, _shape), "records shape"),
    "tensor missing from shapes": (
        lambda p: _rewrite_meta(p, lambda m, t: {**m, "shapes": {}}),
        "records shape",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_adapter_file_is_one_line_error(case, adapter_file, capsys):
    damage, words = CASES[case]
    damage(adapter_file)
    with pytest.raises(AdapterMismatchError, match=words) as e:
        read_adapter(adapter_file.parent)
    assert str(adapter_file) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SystemExit) as ex:  # what every CLI does with it: one line, exit 2
        run(lambda argv: read_adapter(adapter_file.parent), [])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and ADAPTER_FILE in err[0]


def test_sound_adapter_reads(adapter_file):
    tensors, meta = read_adapter(adapter_file.parent)
    assert meta["family"] == "bert" and set(meta["shapes"]) == set(tensors)
