#!/usr/bin/env python
"""Long-lived training workers for the benchmarks: each `Worker` is one process
(`python bench/runner.py --serve`) that trains the runs sent to it one by one through the one
training loop (beft.train.Trainer), so Python, torch and transformers are imported once per
worker, not once per run. A run's output goes to its log file; a failed run is reported and the
next one goes on.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    """One long-lived process (`runner.py --serve`) that trains the runs sent to it one by one."""

    def __init__(self):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=str(ROOT),
        )

    def train(self, args: list[str], log: Path) -> str:
        self.proc.stdin.write(json.dumps({"args": args, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        return json.loads(reply)["status"] if reply else f"worker exited ({self.proc.wait()})"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve() -> int:
    """--serve: read {"args", "log"} lines on stdin, train each in this process with its output in
    its log file, answer one status line each."""
    import contextlib

    from beft.config import load_config
    from beft.train import Trainer

    reply = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        job = json.loads(line)
        with (
            open(job["log"], "w") as f,
            contextlib.redirect_stdout(f),
            contextlib.redirect_stderr(f),
        ):
            try:
                Trainer(load_config(None, job["args"])).run()
                status = "ok"
            except Exception as e:  # noqa: BLE001  (reported, the next run goes on)
                import traceback

                traceback.print_exc()
                status = (
                    f"{type(e).__name__}:"
                    f" {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                )
        reply.write(json.dumps({"status": status}) + "\n")
    return 0


def train_once(
    worker: "Worker | None", args: list[str], out: Path, log: Path
) -> tuple[dict | None, str]:
    """(result.json, status) of the run in `out`: trained by `worker` unless already finished."""
    if not (out / "result.json").is_file():
        status = worker.train(args + [f"output_dir={out}", "resume=true"], log)
        if status != "ok":
            return None, status
    return json.loads((out / "result.json").read_text()), "ok"


def pool(items: list, workers: int, fn: Callable, needs_worker: Callable[[object], bool]) -> list:
    """[fn(item, worker) for item in items] on `workers` threads, each with its own Worker, started
    only when an item needs one (needs_worker(item): not finished yet). Results in item order."""
    todo: queue.Queue = queue.Queue()
    for i, item in enumerate(items):
        todo.put((i, item))
    out: list = [None] * len(items)

    def work() -> None:
        worker = None
        try:
            while True:
                try:
                    i, item = todo.get_nowait()
                except queue.Empty:
                    return
                if worker is None and needs_worker(item):
                    worker = Worker()
                out[i] = fn(item, worker)
        finally:
            if worker is not None:
                worker.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    sys.exit(serve())
