"""Decoder generation tasks (SQuAD, DROP): greedy answers cut at the first newline.

`collate` builds two views of each example: the right-padded prompt + " answer\\n" for the LM
loss, and the left-padded prompt alone (gen_*) for `generate`. The task keeps the tokenizer
it last collated with, to decode predictions (or pass tokenizer= to predict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from beft.tasks.base import Splits
from beft.tasks.decoder import load_decoder
from beft.tasks.metrics import answer_scores
from beft.tasks.prompts import GenPrompt
from beft.tasks.scoring import completion_batch, completion_loss, completion_losses, pad_id
from beft.tasks.splits import DataSpec


class StopOnNewline(StoppingCriteria):
    """Per-sequence stop once the generated text (past `prompt_len`) contains a newline."""

    def __init__(self, tokenizer, prompt_len: int) -> None:
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores, **kw) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(
            input_ids[:, self.prompt_len :], skip_special_tokens=True
        )
        return torch.tensor(["\n" in t for t in texts], dtype=torch.bool, device=input_ids.device)


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def pad_left(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([[value] * (width - len(s)) + s for s in seqs], dtype=torch.long)


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    batch: dict[str, torch.Tensor],
    max_new_tokens: int = 50,
    synced_gpus: bool = False,
) -> tuple[list[str], int]:
    """Greedy continuations of the gen_* prompts, cut at newline; also the steps generated."""
    ids = batch["gen_input_ids"]
    out = model.generate(
        input_ids=ids,
        attention_mask=batch["gen_attention_mask"],
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id(tokenizer),
        stopping_criteria=StoppingCriteriaList([StopOnNewline(tokenizer, ids.shape[1])]),
        synced_gpus=synced_gpus,
    )
    new = out[:, ids.shape[1] :]  # (B, steps)
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [first_line(t) for t in texts], new.shape[1]


@dataclass
class GenTask:
    name: str
    data: DataSpec
    prompt: GenPrompt
    main_metric: str = "f1"
    max_new_tokens: int = 50
    train_objective: str = "lm"  # generation trains on the gold answer only
    arch: str = "decoder"
    num_labels: int | None = None
    labels: tuple[str, ...] | None = None  # no classes
    # predictions call model.generate: ranks that shard the parameters must pass synced_gpus
    generates: ClassVar[bool] = True
    tokenizer: object = field(default=None, repr=False)

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
        self.tokenizer = tokenizer
        prompts = [self.prompt.prompt(ex) for ex in examples]
        gen = [tokenizer(p)["input_ids"][-max_length:] for p in prompts]
        return {
            **completion_batch(
                tokenizer, prompts, [f" {ex['answers'][0]}\n" for ex in examples], max_length
            ),
            "gen_input_ids": pad_left(gen, pad_id(tokenizer)),  # (B, Lp) left-padded
            "gen_attention_mask": pad_left([[1] * len(s) for s in gen], 0),
        }

    def loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return completion_loss(model, batch)

    def example_losses(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) per example: the mean negative log-likelihood of its answer's tokens."""
        return completion_losses(model, batch)

    def predict(self, model, batch: dict[str, torch.Tensor], **kw) -> list[str]:
        tokenizer = kw.get("tokenizer") or self.tokenizer
        if tokenizer is None:
            raise ValueError(f"{self.name}: call collate (or pass tokenizer=) before predict")
        texts, _ = generate_answers(
            model,
            tokenizer,
            batch,
            kw.get("max_new_tokens", self.max_new_tokens),
            bool(kw.get("synced_gpus", False)),
        )
        return texts

    def metrics(self, preds: list, examples: list[dict]) -> dict[str, float]:
        return answer_scores(preds, [ex["answers"] for ex in examples])
