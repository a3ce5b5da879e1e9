"""An export never destroys what lies at its output path: existing folders are refused,
overwrite=true
replaces only a previous export (atomically), a run or adapter folder never, a source never."""

import json
import os

import pytest
import torch
from test_export import _trained

import beft.bias.export as export_mod
from beft.bias.export import MARKER, RUN_NAMES, ExportError, export_peft, merge_checkpoint

pytest.importorskip("peft")


def snapshot(folder):
    """Every file under folder (relative path -> bytes): equal snapshots mean an untouched
    folder."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def export(kind, out, model, sel, **kw):
    return (export_peft if kind == "peft" else merge_checkpoint)(out, sel, model, **kw)


@pytest.fixture(scope="module")
def trained():
    model, sel, _ = _trained("llama", "v")
    return model, sel


def _set_biases(sel, values):
    with torch.no_grad():
        for p, v in zip(sel.bias_parameters().values(), values):
            p.copy_(v)


@pytest.mark.parametrize("kind", ["peft", "merge"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_folder_holding_other_files_is_refused(kind, overwrite, trained, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="overwrite=true") as e:
        export(kind, out, *trained, overwrite=overwrite)
    assert "\n" not in str(e.value) and str(out) in str(e.value)
    assert snapshot(out) == {"notes.txt": b"mine"}
    assert os.listdir(tmp_path) == ["precious"]  # no temp folder left behind


@pytest.mark.parametrize("name", RUN_NAMES)
def test_run_or_adapter_folder_is_refused_even_with_overwrite(name, trained, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("x")
    # even a marker that claims the run's files does not make it replaceable
    (out / MARKER).write_text(json.dumps({"kind": "peft", "files": [name, MARKER]}))
    before = snapshot(out)
    with pytest.raises(ExportError, match="never replaced, even with overwrite=true"):
        export("peft", out, *trained, overwrite=True)
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["peft", "merge"])
def test_overwrite_replaces_a_previous_export(kind, trained, tmp_path):
    model, sel = trained
    out = tmp_path / "exp"
    export(kind, out, model, sel)
    first = snapshot(out)
    assert json.loads(first[MARKER])["files"] == sorted(first)
    with pytest.raises(
        ExportError, match="already exists; choose another path, or pass overwrite=true"
    ):
        export(kind, out, model, sel)
    assert snapshot(out) == first
    trained_values = [p.detach().clone() for p in sel.bias_parameters().values()]
    _set_biases(sel, [v + 1 for v in trained_values])
    try:
        export(kind, out, model, sel, overwrite=True)
    finally:
        _set_biases(sel, trained_values)
    second = snapshot(out)
    assert sorted(second) == sorted(first) and second != first
    assert os.listdir(tmp_path) == ["exp"]  # the old copy and the temp folder are gone
    export(kind, out, model, sel, overwrite=True)  # and it can be replaced again
    assert snapshot(out) == first


def test_overwrite_refuses_an_export_with_added_files(trained, tmp_path):
    out = tmp_path / "exp"
    export("peft", out, *trained)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(ExportError, match=r"did not write \(notes.txt\)"):
        export("peft", out, *trained, overwrite=True)
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["peft", "merge"])
@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_output_overlapping_the_source_is_refused(kind, where, trained, tmp_path):
    src = tmp_path / "run" / "adapter"
    src.mkdir(parents=True)
    (src / "adapter.safetensors").write_bytes(b"x")
    out = {"same": src, "inside": src / "exp", "holds": tmp_path / "run"}[where]
    before = snapshot(tmp_path)
    with pytest.raises(ExportError, match="source"):
        export(kind, out, *trained, overwrite=True, sources=(src,))
    assert snapshot(tmp_path) == before and not (src / "exp").exists()


def test_failed_write_leaves_the_previous_export(trained, tmp_path, monkeypatch):
    out = tmp_path / "exp"
    export("peft", out, *trained)
    before = snapshot(out)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(export_mod, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        export("peft", out, *trained, overwrite=True)
    assert snapshot(out) == before and os.listdir(tmp_path) == ["exp"]


def test_failed_swap_puts_the_old_export_back(trained, tmp_path, monkeypatch):
    out = tmp_path / "exp"
    export("peft", out, *trained)
    before = snapshot(out)
    rename, calls = os.rename, []

    def second_rename_fails(a, b):  # old -> aside succeeds, new -> in fails, old -> back succeeds
        calls.append(b)
        if len(calls) == 2:
            raise OSError("interrupted")
        rename(a, b)

    monkeypatch.setattr(export_mod.os, "rename", second_rename_fails)
    with pytest.raises(OSError, match="interrupted"):
        export("peft", out, *trained, overwrite=True)
    monkeypatch.undo()
    assert len(calls) == 3 and snapshot(out) == before and os.listdir(tmp_path) == ["exp"]
