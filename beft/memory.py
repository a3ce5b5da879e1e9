"""This process's memory, as the kernel counts it: anonymous memory sampled in a thread (RssAnon,
what a rank really owns; a memory-mapped checkpoint's pages are shared page cache and not in it)
and the kernel's own high-water mark of the resident set (VmHWM, mapped pages included)."""
from __future__ import annotations

import threading
from pathlib import Path

STATUS = Path("/proc/self/status")


def read_status() -> dict[str, int]:
    """{field: bytes} of /proc/self/status's memory lines (Linux); {} elsewhere."""
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key] = int(parts[0]) * 1024
    return out


class PeakMemory:
    """Samples RssAnon every `every` seconds until stop(); peak() -> (peak RssAnon, VmHWM) in bytes."""

    def __init__(self, every: float = 0.2):
        self.every = every
        self.peak_anon = read_status().get("RssAnon", 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beft-memory", daemon=True)

    def start(self) -> "PeakMemory":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_anon = max(self.peak_anon, read_status().get("RssAnon", 0))

    def peak(self) -> tuple[int, int]:
        status = read_status()
        self.peak_anon = max(self.peak_anon, status.get("RssAnon", 0))
        return self.peak_anon, status.get("VmHWM", 0)

    def stop(self) -> None:
        self._stop.set()
