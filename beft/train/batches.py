"""This rank's share of the training set: each epoch's order, its micro-batches, the tokens seen."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..backends import dist


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class Batches:
    """examples: the training split; collate: a list of examples -> a batch of tensors (the task's
    collate with its tokenizer and max length); micro: examples per micro-batch on this rank;
    accum: micro-batches per optimizer step."""

    def __init__(self, examples, collate: Callable, micro: int, accum: int, seed: int, device):
        self.examples, self.collate, self.micro, self.accum = examples, collate, micro, accum
        self.seed, self.device, self.tokens = seed, device, 0

    def order(self, epoch: int) -> list[int]:
        """The epoch's shuffle: the same on every rank and on every resume."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.examples), generator=g).tolist()

    def local(self, global_idx: list[int]) -> list[list[dict]]:
        """This rank's micro-batches of one global batch (rank-contiguous shards)."""
        r, m, accum = dist.rank(), self.micro, self.accum
        mine = global_idx[r * m * accum : (r + 1) * m * accum]
        return [[self.examples[i] for i in mine[k * m : (k + 1) * m]] for k in range(accum)]

    def micro_batches(self, global_idx: list[int]) -> Iterator[dict]:
        """This rank's collated micro-batches on its device, counting their tokens as they go."""
        for micro in self.local(global_idx):
            batch = to_device(self.collate(micro), self.device)
            self.tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
            yield batch

    def take_tokens(self) -> int:
        """The tokens counted since the last call."""
        tokens, self.tokens = self.tokens, 0
        return tokens
