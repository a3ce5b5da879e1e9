"""launch/inventory.py: bad options are one line on stderr naming the key, exit 2, no traceback
(checked before any model is built, so no model package is needed)."""

import importlib.util

import pytest

from beft.cli import run
from inprocess import run_main
from paths import ROOT

_spec = importlib.util.spec_from_file_location("launch_inventory", ROOT / "launch" / "inventory.py")
INVENTORY = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(INVENTORY)


@pytest.mark.parametrize(
    "key,argv",
    [
        ("num_labels", ["num_labels=-3"]),
        ("num_labels", ["num_labels=0"]),
        ("num_labels", ["num_labels=abc"]),
        ("arch", ["arch=banana"]),
        ("bias_patterns", ["bias_patterns=garbage"]),
        ("bias_patterns", ["bias_patterns=v=("]),
        ("json", ["json=maybe"]),
        ("bias", ["bias=xyz"]),
    ],
)
def test_bad_option_is_one_line_naming_the_key(capsys, key, argv):
    with pytest.raises(SystemExit) as e:
        run(INVENTORY.main, ["minilm", *argv])
    out = capsys.readouterr()
    assert e.value.code == 2 and out.out == ""
    assert len(out.err.splitlines()) == 1 and out.err.startswith(f"error: {key}"), out.err


def test_unknown_model_and_missing_model_argument():
    def cli(*argv):
        out = run_main(INVENTORY.main, argv)
        assert (
            out.returncode == 2
            and len(out.stderr.splitlines()) == 1
            and "Traceback" not in out.stderr
        )
        return out.stderr

    err = cli("beft-no-such-model", "bias=v")
    assert "model='beft-no-such-model' is neither a built-in short name (minilm, smollm2)" in err
    assert "huggingface.co" not in err
    assert "the model as the first argument" in cli("bias=v")
