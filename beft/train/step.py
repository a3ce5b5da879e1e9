"""What one optimizer step is, for the recipe: the Step protocol, the first-order step, and the one
factory that picks a step from the config (optim.kind=zo: beft/zo/step.py)."""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

import torch


@runtime_checkable
class Step(Protocol):
    def run(self, model, batches: Iterable[dict], step: int) -> tuple[float, float]:
        """One optimizer step over this rank's micro-batches: (mean loss, gradient norm)."""

    def state_dict(self) -> dict | None:
        """What a checkpoint must keep beyond the trained tensors and the backend's optimizer."""

    def load_state_dict(self, state: dict) -> None: ...

    def before_training(self, run) -> None:
        """Once, before the first step of a run that starts from step 0 (run: the recipe)."""


class FirstOrderStep:
    """Backpropagation: each micro-batch's loss backward, then the backend's optimizer step."""

    def __init__(self, backend, task, params: dict[str, torch.Tensor]):
        self.backend, self.task, self.params = backend, task, list(params.values())

    def run(self, model, batches: Iterable[dict], step: int) -> tuple[float, float]:
        losses = []
        for batch in batches:
            with self.backend.autocast():
                loss = self.task.loss(model, batch)
            self.backend.backward(loss)
            losses.append(loss.detach().float().item())
        return sum(losses) / len(losses), self.backend.step(self.params)

    def state_dict(self) -> None:
        return None  # the backend's optimizer and scheduler hold it all

    def load_state_dict(self, state: dict) -> None:
        pass

    def before_training(self, run) -> None:
        pass


def build(cfg, model, params, selection, backend, task, head_lr: float, lr_fn) -> Step:
    if cfg.optim.kind == "zo":
        from ..zo.step import ZOStep

        return ZOStep(cfg, model, params, selection, backend, task, head_lr, lr_fn)
    return FirstOrderStep(backend, task, params)
