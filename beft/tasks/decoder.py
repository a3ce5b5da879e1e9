"""Decoder classification / multiple-choice tasks scored by candidate mean log-likelihood."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from beft.tasks.base import Splits
from beft.tasks.metrics import answer_scores, label_metrics
from beft.tasks.prompts import ChoicePrompt
from beft.tasks.scoring import (
    candidate_batch,
    gold_lm_loss,
    gold_lm_losses,
    mean_loglik,
    score_matrix,
)
from beft.tasks.splits import DataSpec, load_splits

DEFAULT_TRAIN = DEFAULT_EVAL = 1000
OBJECTIVES = ("ce", "lm")


def load_decoder(
    name: str,
    data: DataSpec,
    data_dir: str | None,
    regime: str,
    seed: int,
    n_train: int | None,
    n_eval: int | None,
) -> Splits:
    """Decoder sizes: 1000 train / 1000 eval unless given; regime 'all' = every train row."""
    if n_train is None and regime != "all":
        n_train = DEFAULT_TRAIN
    splits = load_splits(data, data_dir, seed, n_train, n_eval or DEFAULT_EVAL, name)
    splits.notes.append(f"{name}: decoder sizes (regime {regime})")
    return splits


@dataclass(frozen=True)
class ChoiceTask:
    name: str
    data: DataSpec
    prompt: ChoicePrompt
    main_metric: str  # "accuracy", or "f1" for MultiRC / ReCoRD
    metric_kind: str = "accuracy"  # which label metrics to report (see metrics.METRICS)
    train_objective: str = "ce"
    arch: str = "decoder"
    num_labels: int | None = None  # encoder only
    labels: tuple[str, ...] | None = None  # class names by id where the data names them (own data)
    generates: ClassVar[bool] = False  # scores the candidates (no generate)

    def __post_init__(self) -> None:
        if self.train_objective not in OBJECTIVES:
            raise ValueError(
                f"train_objective must be one of {OBJECTIVES}, got {self.train_objective!r}"
            )

    def load(
        self,
        data_dir: str | None = None,
        regime: str = "all",
        seed: int = 0,
        n_train: int | None = None,
        n_eval: int | None = None,
    ) -> Splits:
        return load_decoder(self.name, self.data, data_dir, regime, seed, n_train, n_eval)

    def collate(self, tokenizer, examples: list[dict], max_length: int) -> dict[str, torch.Tensor]:
        return candidate_batch(
            tokenizer,
            [self.prompt.prompt(ex) for ex in examples],
            [self.prompt.candidates(ex) for ex in examples],
            [ex["label"] for ex in examples],
            max_length,
        )

    def loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.train_objective == "lm":
            return gold_lm_loss(model, batch)
        return F.cross_entropy(score_matrix(mean_loglik(model, batch), batch), batch["labels"])

    def example_losses(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) the training loss of each example (their mean is `loss` under ce)."""
        if self.train_objective == "lm":
            return gold_lm_losses(model, batch)
        return F.cross_entropy(
            score_matrix(mean_loglik(model, batch), batch), batch["labels"], reduction="none"
        )

    @torch.no_grad()
    def predict(self, model, batch: dict[str, torch.Tensor], **kw) -> list[int]:
        return score_matrix(mean_loglik(model, batch), batch).argmax(-1).tolist()

    def metrics(self, preds: list, examples: list[dict]) -> dict[str, float]:
        if examples and "answers" in examples[0]:  # ReCoRD: score the chosen entity's text
            texts = [ex["candidates"][p] for p, ex in zip(preds, examples, strict=True)]
            return answer_scores(texts, [ex["answers"] for ex in examples])
        return label_metrics(self.metric_kind, preds, [ex["label"] for ex in examples])
