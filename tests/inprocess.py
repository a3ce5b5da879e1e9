"""Run a command's main(argv) in this process, as its script would run in a fresh one, without
starting Python, torch and transformers again (a few seconds per run).

    p = run_main(beft.commands.train.main, ["model=...", ...], env={...}, cwd=ROOT)
    p.returncode, p.stdout, p.stderr   # what subprocess.run(..., capture_output=True) gives

beft.cli.run maps errors to the CLI's exit codes (2 for a user error, 143 for a stop); an exception
it lets through is a traceback and exit 1, as Python's own. Everything a run may change for the
process is restored afterwards: os.environ, cwd, sys.argv, torch threads and random states, signal
handlers, library log levels. Use a subprocess where the process itself is the point: exit codes
of a killed process, signals, launchers, several ranks.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import signal
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

# Fault injection kills or signals the process it runs in: such a run needs its own process.
FAULT_ENV = ("BEFT_KILL", "BEFT_TERM")


@dataclass
class Finished:
    """The fields of subprocess.CompletedProcess that the tests read."""

    args: list
    returncode: int
    stdout: str
    stderr: str
    port: int | None = None


def needs_process(env: dict | None) -> bool:
    return any(k.startswith(FAULT_ENV) for k in env or {})


def _python_warnings() -> None:
    """The warning filters of a fresh `python` (pytest's own filters are not what a user sees)."""
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.simplefilter("ignore", category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings.showwarning = (
        lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line)
        )
    )


@contextlib.contextmanager
def _process_state(env: dict | None, cwd, argv0: str, argv: list):
    """os.environ (+ env), cwd and sys.argv for the run; every piece of global state a run sets,
    restored on the way out."""
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    threads = torch.get_num_threads()
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    ds_logger = logging.getLogger("DeepSpeed")
    ds_filters, ds_level = list(ds_logger.filters), ds_logger.level
    from transformers.utils import logging as tf_logging

    tf_level, tf_bar = tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled()
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    if cwd is not None:
        os.chdir(cwd)
    sys.argv = [argv0, *argv]
    try:
        with warnings.catch_warnings():
            _python_warnings()
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        torch.set_num_threads(threads)
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])
        np.random.set_state(rng[2])
        for s, h in handlers.items():
            signal.signal(s, h)
        ds_logger.filters[:] = ds_filters
        ds_logger.setLevel(ds_level)
        tf_logging.set_verbosity(tf_level)
        (tf_logging.enable_progress_bar if tf_bar else tf_logging.disable_progress_bar)()


@contextlib.contextmanager
def _log_streams(out, err):
    """Logging handlers made before the run hold the stdout / stderr of that moment (transformers'
    handler, made when it was imported): they write to out / err while the run lasts."""
    targets = {
        id(sys.stdout): out,
        id(sys.__stdout__): out,
        id(sys.stderr): err,
        id(sys.__stderr__): err,
    }
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    moved = [
        (h, h.stream)
        for lg in loggers
        for h in lg.handlers
        if type(h) is logging.StreamHandler and id(h.stream) in targets
    ]
    for h, stream in moved:
        h.setStream(targets[id(stream)])
    try:
        yield
    finally:
        for h, stream in moved:
            h.setStream(stream)


def run_main(
    main: Callable[[list[str]], int],
    argv: list,
    *,
    env: dict | None = None,
    cwd=None,
    argv0: str = "beft",
) -> Finished:
    """main(argv) through beft.cli.run (one-line errors, exit codes) with stdout and stderr
    captured."""
    from beft.cli import run

    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with (
        _process_state(env, cwd, argv0, argv),
        _log_streams(out, err),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            run(main, argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001  (what an uncaught exception does to a process)
            traceback.print_exc()
            code = 1
    return Finished([argv0, *argv], code, out.getvalue(), err.getvalue())


_SCRIPTS: dict = {}


def run_script(script, argv: list, **kw) -> Finished:
    """A thin entry script (launch/*.py, slurm/sweep.py: `run(main, sys.argv[1:])`) run in this
    process: its module's main through run_main."""
    import importlib.util

    path = str(script)
    if path not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"_script_{len(_SCRIPTS)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[path] = module.main
    return run_main(_SCRIPTS[path], argv, argv0=path, **kw)
