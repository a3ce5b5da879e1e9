"""tests/inprocess.py: a command run in the pytest process exits, prints and leaves the process as
its script does in a fresh one."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from beft.cli import UsageError
from beft.stop import Stopped
from inprocess import needs_process, run_main, run_script
from paths import ROOT


def _raises(exc):
    def main(argv):
        raise exc

    return main


@pytest.mark.parametrize(
    "main,code,err",
    [
        (lambda argv: 0, 0, ""),
        (lambda argv: 3, 3, ""),
        (_raises(UsageError("bad key x=1\nmore")), 2, "error: bad key x=1\n"),
        (_raises(Stopped("SIGTERM at step 4")), 143, "stopped: SIGTERM at step 4\n"),
        (_raises(SystemExit("no way")), 1, "no way\n"),
    ],
    ids=["returns-0", "returns-3", "usage-error", "stopped", "exit-message"],
)
def test_exit_codes_and_messages_are_the_clis(main, code, err):
    p = run_main(main, [])
    assert (p.returncode, p.stderr, p.stdout) == (code, err, "")


def test_an_uncaught_exception_is_a_traceback_and_exit_1():
    p = run_main(_raises(RuntimeError("boom")), [])
    assert (
        p.returncode == 1
        and p.stderr.startswith("Traceback")
        and p.stderr.endswith("RuntimeError: boom\n")
    )


def test_process_state_is_the_scripts_and_restored(tmp_path):
    from transformers.utils import logging as tf_logging

    before = (
        dict(os.environ),
        os.getcwd(),
        torch.get_num_threads(),
        signal.getsignal(signal.SIGTERM),
        tf_logging.get_verbosity(),
        sys.argv,
    )
    seen = {}

    def main(argv):
        seen.update(argv=list(sys.argv), cwd=os.getcwd(), env=os.environ.get("BEFT_X"))
        os.environ["BEFT_Y"] = "1"
        os.chdir("/")
        torch.set_num_threads(before[2] + 1)
        signal.signal(signal.SIGTERM, lambda *a: None)
        tf_logging.set_verbosity_debug()
        print("to stdout")
        tf_logging.get_logger("transformers").warning("from a library logger")
        return 0

    p = run_main(main, ["a=1"], env={"BEFT_X": "x"}, cwd=tmp_path, argv0="prog")
    assert seen == {"argv": ["prog", "a=1"], "cwd": str(tmp_path), "env": "x"}
    assert p.stdout == "to stdout\n" and "from a library logger" in p.stderr
    assert (
        dict(os.environ),
        os.getcwd(),
        torch.get_num_threads(),
        signal.getsignal(signal.SIGTERM),
        tf_logging.get_verbosity(),
        sys.argv,
    ) == before


def test_fault_injection_needs_its_own_process():
    assert needs_process({"BEFT_KILL_AT": "eval:3"}) and needs_process(
        {"BEFT_TERM_AFTER_STEP": "2"}
    )
    assert not needs_process({"HF_HUB_OFFLINE": "1"}) and not needs_process(None)


def test_same_exit_code_and_stderr_as_the_script(tmp_path):
    args = ["model=minilm", "optim.lr=3", f"output_dir={tmp_path / 'x'}"]
    script = ROOT / "launch" / "train.py"
    real = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    here = run_script(script, args)
    assert real.returncode == here.returncode == 2
    assert (real.stdout, real.stderr) == (here.stdout, here.stderr)
