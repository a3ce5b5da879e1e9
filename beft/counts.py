"""How many parameters a run trains: one type for every method, written into result.json.

    Counts(total, per_target={"v": 128}, head=130).as_dict()
    -> {"per_target": {"v": 128}, "bias": 128, "head": 130, "trainable": 258, "total": ...,
        "bias_per_mille": ...}

bias is the sum of per_target; trainable is bias + adapter + head unless a method states it
(full fine-tuning trains all `total`). Optional entries (adapter, tensors_touched, reparam) appear
in the dict only where a method sets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Counts:
    total: int  # the base model's parameters
    per_target: dict[str, int] = field(
        default_factory=dict
    )  # bias entries by target (q, v, other, ...)
    head: int = 0  # the new task head
    adapter: int | None = None  # non-bias trained tensors (peft LoRA, prefix)
    trainable: int | None = None  # None: bias + adapter + head
    tensors_touched: int | None = None  # rand_uniform: bias tensors holding a chosen entry
    reparam: dict | None = None  # reparametrised deltas: kind and shapes

    def __post_init__(self) -> None:
        if self.trainable is None:
            object.__setattr__(self, "trainable", self.bias + (self.adapter or 0) + self.head)

    @property
    def bias(self) -> int:
        return sum(self.per_target.values())

    @property
    def bias_per_mille(self) -> float:
        return 1000.0 * self.bias / max(self.total, 1)

    def as_dict(self) -> dict:
        """result.json's "trainable" entry (its keys in this order)."""
        out = {"per_target": dict(self.per_target), "bias": self.bias}
        if self.adapter is not None:
            out["adapter"] = self.adapter
        out.update(
            head=self.head,
            trainable=self.trainable,
            total=self.total,
            bias_per_mille=self.bias_per_mille,
        )
        if self.tensors_touched is not None:
            out["tensors_touched"] = self.tensors_touched
        if self.reparam is not None:
            out["reparam"] = self.reparam
        return out
