"""`beft COMMAND ...`: the console script, python -m beft and launch/*.py are one dispatch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from beft import commands
from beft.cli import run
from paths import ROOT
from tiny import save_tiny


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return str(save_tiny("bert", tmp_path_factory.mktemp("cli") / "bert"))


def beft_script() -> list[str]:
    """The installed `beft` console script; where the package was installed before pyproject
    declared
    it (reinstall: pip install -e .), the code that script runs, read from pyproject's
    [project.scripts].
    """
    installed = Path(sys.executable).parent / "beft"
    if installed.is_file():
        return [str(installed)]
    module, fn = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"][
        "beft"
    ].split(":")
    return [sys.executable, "-c", f"import {module}; {module}.{fn}()"]


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=300)


def test_console_script_dispatches_every_command(tiny_bert):
    p = _run(beft_script() + ["-h"])
    assert p.returncode == 0 and all(f"beft {c}" in p.stdout for c in commands.COMMANDS), p.stdout
    p = _run(beft_script() + ["trian", "model=minilm"])
    assert p.returncode == 2 and p.stderr.splitlines() == [
        "error: unknown command 'trian'; commands: train, export, inventory, plan, rank, sweep"
        " (beft -h for help)"
    ]
    p = _run(beft_script() + ["inventory", f"model={tiny_bert}", "bias=v", "json=true"])
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    m = _run([sys.executable, "-m", "beft", "inventory", tiny_bert, "bias=v", "json=true"])
    assert m.returncode == 0 and json.loads(m.stdout) == report
    p = _run([sys.executable, "-m", "beft", "train", "--load_in_8bit", "--load_in_4bit"])
    assert p.returncode == 2 and p.stderr.splitlines() == [
        "error: --load_in_8bit and --load_in_4bit contradict each other (quant); give one of them"
    ]


def test_in_process_dispatch_equals_each_entry(tiny_bert, capsys):
    def out(main, argv):
        with pytest.raises(SystemExit) as e:
            run(main, argv)
        o = capsys.readouterr()
        assert e.value.code == 0, o.err
        return json.loads(o.out)

    from beft.commands import inventory

    by_key = out(commands.main, ["inventory", f"model={tiny_bert}", "bias=qv", "json=true"])
    assert by_key == out(commands.main, ["inventory", tiny_bert, "bias=qv", "json=true"])
    assert by_key == out(inventory.main, [tiny_bert, "bias=qv", "json=true"])
    plan = ["model=minilm", "bias=v", "batch_size=8", "json=true"]
    assert out(commands.main, ["plan", *plan]) == out(commands.command("plan"), plan)
    with pytest.raises(SystemExit) as e:
        run(commands.main, ["inventory", tiny_bert, f"model={tiny_bert}x"])
    assert e.value.code == 2 and "two models given" in capsys.readouterr().err


OWN_PROCESS = r"""
import atexit, sys, threading, time
from pathlib import Path
from beft.cli import run

out = Path(sys.argv[1])

class Teardown:  # its __del__ runs only when the interpreter tears the module down
    def __del__(self):
        (out / "teardown").write_text("ran")

kept = Teardown()
atexit.register(lambda: (out / "atexit").write_text("ran"))

def late():
    time.sleep(0.3)
    (out / "thread").write_text("ran")

def main(argv):
    threading.Thread(target=late).start()  # not a daemon: exit waits for it
    sys.stdout.write("no newline, block-buffered")
    return int(argv[0])

run(main, sys.argv[2:], own_process=sys.argv[2] != "0")
"""


@pytest.mark.parametrize("code", [0, 3])
def test_own_process_ends_without_the_interpreter_s_teardown(code, tmp_path):
    """A command in its own process (launch/*.py, the console script) ends through
    beft.cli.end_process: threads joined, atexit handlers run, stdout flushed, the exit status kept,
    but no module teardown (2-3 s once torch and transformers are imported)."""
    script = tmp_path / "entry.py"
    script.write_text(OWN_PROCESS)
    p = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(code)], capture_output=True, text=True
    )
    assert p.returncode == code, p.stderr
    assert p.stdout == "no newline, block-buffered"
    assert (tmp_path / "atexit").is_file() and (tmp_path / "thread").is_file()
    # code 3 ran as its own process: no teardown; code 0 took SystemExit, Python's own exit
    assert (tmp_path / "teardown").is_file() == (code == 0)
