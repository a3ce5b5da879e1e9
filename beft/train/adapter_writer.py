"""Writes the run's adapter folders (adapter/, adapter_best/): the trained tensors in beft's format
with what makes them portable (the base as the user named it, its config hash, task, labels)."""

from __future__ import annotations

import functools
from pathlib import Path

from ..bias.adapter import save_adapter
from ..models import base_identity
from ..tasks import label_maps


class AdapterWriter:
    def __init__(self, cfg, method, model, task):
        self.cfg, self.method, self.model, self.task = cfg, method, model, task

    @functools.cached_property
    def meta(self) -> dict:
        """The base as the user named it, where it was found, its config.json's hash (read once)."""
        cfg = self.cfg
        return {"task": cfg.task, "seed": cfg.seed, "method": cfg.method,
                **base_identity(cfg.model), **label_maps(self.task.labels)}  # fmt: skip

    def write(self, directory: Path, state: dict) -> None:
        """state: full copies of the trainable tensors by name (the backend's full_state)."""
        if self.method.adapter_state is not None:  # e.g. reparametrised: write b_0 + delta
            state = self.method.adapter_state(state)
        sel = self.method.selection
        save_adapter(directory, sel, self.model, state=state, extra_meta=self.meta)
