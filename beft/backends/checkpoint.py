"""A safetensors checkpoint read tensor by tensor (memory-mapped), or row by row for a shard.

Sharded loading never materialises the checkpoint: each read copies one tensor (or the rows a
rank owns) out of the mapped file, so a rank's memory holds its partition plus one tensor in
flight, whatever the sizes of the checkpoint's files (LLaMA-2-7B ships 9.9 + 3.5 GB)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

INDEX = "model.safetensors.index.json"
LEGACY = {"gamma": "weight", "beta": "bias"}  # old LayerNorm names that transformers renames


class CheckpointMismatch(ValueError):
    """The checkpoint does not fit the model's config (a missing or misshaped tensor)."""


class Checkpoint:
    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / INDEX
        if index.is_file():
            files = json.loads(index.read_text())["weight_map"]
        elif (self.folder / "model.safetensors").is_file():
            files = None
        else:
            raise CheckpointMismatch(
                f"{self.folder} holds no safetensors checkpoint (model.safetensors or "
                f"{INDEX}); sharded loading needs one (convert .bin with save_pretrained)"
            )
        self._open = {}
        self.file_of: dict[str, str] = {}
        for name in sorted(set(files.values())) if files else ["model.safetensors"]:
            self._open[name] = handle = safe_open(str(self.folder / name), framework="pt")
            for key in handle.keys():
                self.file_of[key] = name

    def keys(self) -> set[str]:
        return set(self.file_of)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._open[self.file_of[key]].get_slice(key).get_shape())

    def read(self, key: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The tensor (a copy out of the mapped file), or only rows [start, stop) of dim 0. The file
        is mapped for this read alone: its pages leave the process's resident set once copied (a
        long-lived mapping would keep every page a rank has read resident in it)."""
        from safetensors import safe_open

        with safe_open(str(self.folder / self.file_of[key]), framework="pt") as handle:
            part = handle.get_slice(key)
            return part[rows[0] : rows[1]] if rows is not None else part[:]

    def match(self, names: list[str], prefix: str = "") -> dict[str, str]:
        """model name -> checkpoint key for each name the checkpoint holds: exact, with the base
        model
        prefix (e.g. "bert.") added or removed, or with LayerNorm's legacy gamma/beta names."""
        have, out = self.file_of, {}
        for name in names:
            stem, _, leaf = name.rpartition(".")
            legacy = [f"{stem}.{k}" for k, v in LEGACY.items() if v == leaf]
            for cand in [name, *legacy]:
                options = [cand]
                if prefix and cand.startswith(prefix + "."):
                    options.append(cand[len(prefix) + 1 :])
                elif prefix:
                    options.append(f"{prefix}.{cand}")
                hit = next((o for o in options if o in have), None)
                if hit is not None:
                    out[name] = hit
                    break
        return out

    def check_shapes(self, expected: dict[str, tuple[int, ...]], keys: dict[str, str]) -> None:
        """One line naming the first tensor whose shape disagrees with the model's config."""
        for name, key in keys.items():
            got = self.shape(key)
            if got != tuple(expected[name]):
                raise CheckpointMismatch(
                    f"checkpoint tensor {key} in {self.folder} has shape {list(got)}, the "
                    f"model's config expects {list(expected[name])} for {name}: the "
                    "checkpoint does not match its config.json"
                )


def shard_rows(full_rows: int, world: int, rank: int) -> tuple[int, int]:
    """Rows of dim 0 that FSDP2's Shard(0) gives a rank: torch.chunk's split (ceil(n / world) each,
    the last ranks possibly short or empty)."""
    chunk = -(-full_rows // world)
    start = min(rank * chunk, full_rows)
    return start, min(start + chunk, full_rows)
