"""Encoder tasks: a classification (or regression) head on AutoModelForSequenceClassification.

Training-set sizes per regime (low / medium / high) follow the BEFT paper; 'all' is the whole
train file. CB (250 train rows) and WiC (5,428) are not in the paper's tables; we use
CB 100/200/250 and WiC 1000/3000/5428.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from beft.tasks.base import Splits
from beft.tasks.metrics import label_metrics
from beft.tasks.splits import DataSpec, load_splits

REGIMES = ("low", "medium", "high", "all")
Texts = Callable[[dict], tuple[str, str | None]]


def pair(a: str, b: str | None = None) -> Texts:
    return lambda ex: (ex[a], ex[b] if b else None)


@dataclass(frozen=True)
class EncoderTask:
    name: str
    data: DataSpec
    num_labels: int  # 1 = regression (MSE on the single logit)
    main_metric: str
    sizes: tuple[int, int, int]  # train examples for low, medium, high
    texts: Texts = pair("text_a", "text_b")
    arch: str = "encoder"
    metric_kind: str = ""  # which label metrics to report (see metrics.METRICS); "": main_metric's
    labels: tuple[str, ...] | None = None  # class names by id where the data names them (own data)
    generates: ClassVar[bool] = False  # predictions come from one forward (no generate)

    def load(
        self,
        data_dir: str | None = None,
        regime: str = "all",
        seed: int = 0,
        n_train: int | None = None,
        n_eval: int | None = None,
    ) -> Splits:
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
        if n_train is None and regime != "all":
            n_train = self.sizes[REGIMES.index(regime)]
        splits = load_splits(self.data, data_dir, seed, n_train, n_eval, self.name)
        splits.notes.append(f"{self.name}: regime {regime}")
        return splits

    def collate(self, tokenizer, examples: list[dict], max_length: int) -> dict[str, torch.Tensor]:
        a, b = zip(*(self.texts(ex) for ex in examples))
        second = None if all(x is None for x in b) else [x or "" for x in b]
        batch = dict(
            tokenizer(
                list(a),
                second,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
        )
        dtype = torch.float32 if self.num_labels == 1 else torch.long
        batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=dtype)
        return batch

    def logits(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits  # (B, num_labels)

    def loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_from_logits(self.logits(model, batch), batch["labels"])

    def example_losses(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) the loss of each example; their mean is `loss`."""
        return self.loss_from_logits(self.logits(model, batch), batch["labels"], reduction="none")

    def loss_from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        if self.num_labels == 1:
            return F.mse_loss(logits[:, 0].float(), labels.float(), reduction=reduction)
        return F.cross_entropy(logits.float(), labels, reduction=reduction)

    @torch.no_grad()
    def predict(self, model, batch: dict[str, torch.Tensor], **kw) -> list:
        logits = self.logits(model, batch).float()
        if self.num_labels == 1:
            return logits[:, 0].tolist()
        return logits.argmax(-1).tolist()

    def metrics(self, preds: list, examples: list[dict]) -> dict[str, float]:
        return label_metrics(
            self.metric_kind or self.main_metric, preds, [ex["label"] for ex in examples]
        )
