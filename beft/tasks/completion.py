"""Free prompt/completion pairs (own data, decoder): trained with the completion's log-likelihood.

Evaluation costs one forward per batch, no generation: `loglik` (main) is the mean over examples
of the completion's per-token log-likelihood; `exact_match` the fraction of examples whose every
completion token is the model's argmax given the gold prefix, which is exactly when greedy
decoding from the prompt reproduces the completion's tokens.
The completion is appended to the prompt as it is written (start it with a space where the words
need one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from beft.tasks.own_rows import OwnRows, PreRead
from beft.tasks.scoring import completion_batch, completion_loss, completion_losses, target_logits


@dataclass(frozen=True)
class CompletionTask(PreRead):
    name: str
    rows: OwnRows = field(repr=False, compare=False)
    main_metric: str = "loglik"
    train_objective: str = "lm"
    arch: str = "decoder"
    num_labels: int | None = None
    labels: tuple[str, ...] | None = None
    generates: ClassVar[bool] = False  # scored in one forward (no generate)

    def collate(self, tokenizer, examples: list[dict], max_length: int) -> dict[str, torch.Tensor]:
        return completion_batch(
            tokenizer,
            [ex["prompt"] for ex in examples],
            [ex["completion"] for ex in examples],
            max_length,
        )

    def loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return completion_loss(model, batch)

    def example_losses(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return completion_losses(model, batch)

    @torch.no_grad()
    def predict(self, model, batch: dict[str, torch.Tensor], **kw) -> list[tuple[float, bool]]:
        """Per example: (mean log-likelihood of its completion tokens, greedy decoding reproduces
        them)."""
        logits, targets, tmask = target_logits(model, batch)  # (B, T, V), (B, T), (B, T)
        lp = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0]  # (B, T)
        m = tmask.bool()
        mean = (lp * m).sum(-1) / m.sum(-1).clamp(min=1)
        hit = ((logits.argmax(-1) == targets) | ~m).all(-1)
        return list(zip(mean.tolist(), hit.tolist()))

    def metrics(self, preds: list, examples: list[dict]) -> dict[str, float]:
        n = max(len(preds), 1)
        return {
            "loglik": sum(p[0] for p in preds) / n,
            "exact_match": sum(float(p[1]) for p in preds) / n,
        }
