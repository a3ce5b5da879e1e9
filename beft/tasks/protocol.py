"""What the training loop and the tools use from a task: the one declared Task protocol.

Every task (built-in GLUE / SuperGLUE / decoder choice / generation, own data) provides all of
Task; tasks with a new classification head (encoder tasks) also provide HeadTask, which the
zeroth-order head and the linear probe use. tests/tasks/test_task_protocol.py checks every task.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from beft.tasks.base import Splits

Batch = dict[str, torch.Tensor]


@runtime_checkable
class Task(Protocol):
    name: str
    arch: str  # encoder | decoder: the model class it trains
    main_metric: str  # the key of metrics() that picks the best epoch
    labels: tuple[str, ...] | None  # class names by id where the data names them (adapter metadata)
    num_labels: int | None  # outputs of a new head (encoder; 1 = regression); None: decoder
    generates: bool  # predict calls model.generate (sharded ranks pass synced_gpus)

    def load(
        self,
        data_dir: str | None = None,
        regime: str = "all",
        seed: int = 0,
        n_train: int | None = None,
        n_eval: int | None = None,
    ) -> Splits:
        """The train and eval examples of this run."""

    def collate(self, tokenizer, examples: list[dict], max_length: int) -> Batch:
        """Examples -> one batch of tensors."""

    def loss(self, model, batch: Batch) -> torch.Tensor:
        """The scalar training loss of the batch."""

    def example_losses(self, model, batch: Batch) -> torch.Tensor:
        """(B,) the training loss of each example."""

    def predict(self, model, batch: Batch, **kw) -> list:
        """One prediction per example (kw: synced_gpus, tokenizer, max_new_tokens for
        generation)."""

    def metrics(self, preds: list, examples: list[dict]) -> dict[str, float]:
        """Scores of the predictions against the examples; holds main_metric."""


@runtime_checkable
class HeadTask(Task, Protocol):
    """A task whose model ends in a new head: its logits and their loss, apart from the model."""

    def logits(self, model, batch: Batch) -> torch.Tensor:
        """(B, num_labels) the head's outputs."""

    def loss_from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """The training loss from the head's outputs (reduction 'none': per example)."""
