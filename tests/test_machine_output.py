"""json=true: stdout is the JSON document alone, whatever a library prints on stdout while the
command imports or runs (DeepSpeed's "Setting accelerator to CPU" warning once broke
json.loads(stdout) of launch/inventory.py); the noise goes to stderr."""

import json
import os
import subprocess
import sys

import pytest

from paths import ROOT
from tiny import tiny_config

# Runs a CLI as its own script would run, with three kinds of noise on stdout emitted once the CLI
# reads its model: a logging handler bound to sys.stdout when its library was imported (as
# DeepSpeed's logger is), a print() and a C-level write to file descriptor 1; and a real import of
# DeepSpeed without DS_ACCELERATOR, which logs its accelerator warning on stdout.
NOISY = r"""
import logging, os, runpy, sys
import beft.cli
log = logging.getLogger("noisy_library")
log.addHandler(logging.StreamHandler(sys.stdout))
log.propagate = False
read = beft.cli.model_config

def noisy_model_config(*a, **k):
    log.warning("NOISE from a logging handler")
    print("NOISE from print")
    os.write(1, b"NOISE from a C-level write\n")
    import deepspeed  # noqa: F401
    return read(*a, **k)

beft.cli.model_config = noisy_model_config
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def tiny_bert_config(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert_config")
    tiny_config("bert").save_pretrained(d)  # the inventory reads the config alone
    return str(d)


def _noisy(script, *args):
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    return subprocess.run(
        [sys.executable, "-c", NOISY, str(ROOT / "launch" / script), *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "script,args",
    [("plan.py", ["model=MODEL", "json=true"]), ("inventory.py", ["MODEL", "bias=v", "json=true"])],
)
def test_json_stdout_is_the_document_alone(script, args, tiny_bert_config):
    out = _noisy(script, *[a.replace("MODEL", tiny_bert_config) for a in args])
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert "peak" in doc if script == "plan.py" else doc["family"] == "bert"
    for noise in (
        "NOISE from a logging handler",
        "NOISE from print",
        "NOISE from a C-level write",
        "Setting accelerator to CPU",
    ):
        assert noise in out.stderr and noise not in out.stdout


def test_human_readable_output_and_errors_are_unchanged(tiny_bert_config):
    """Without json=true nothing is redirected (the noise stays where it was printed); with it, a
    bad json= value or a failing command is an error on stderr and nothing on stdout."""
    out = _noisy("plan.py", f"model={tiny_bert_config}", "json=false", "gpu=a100-80")
    assert (
        out.returncode == 0 and "NOISE from print" in out.stdout and "a100-80: fits" in out.stdout
    )
    bad = _noisy("plan.py", f"model={tiny_bert_config}", "json=maybe")
    assert (
        bad.returncode == 2
        and bad.stdout == ""
        and bad.stderr.strip() == "error: json='maybe' is not a boolean (true/false)"
    )
    err = _noisy("plan.py", "model=no-such-model", "json=true")
    assert (
        err.returncode == 2
        and err.stdout == ""
        and err.stderr.splitlines()[-1].startswith("error: ")
    )
