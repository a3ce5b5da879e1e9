"""One pass over the evaluation split: every rank evaluates the whole split (ZeRO-3 and FSDP2 run
each forward on all ranks together), rank 0 shows a progress bar."""

from __future__ import annotations

import torch

from .batches import to_device
from .report import progress


def evaluate(model, task, examples, collate, backend, batch_size: int, bar: bool) -> dict:
    """The task's metrics over `examples` (floats); the model is left in train mode."""
    model.eval()
    preds = []
    # ranks that shard the parameters run every forward together, however long each generates
    kw = {"synced_gpus": True} if task.generates and backend.shards_parameters else {}
    shown = progress(len(examples), "eval", leave=False) if bar else None
    try:
        with torch.no_grad(), backend.autocast():
            for i in range(0, len(examples), batch_size):
                ex = examples[i : i + batch_size]
                preds.extend(task.predict(model, to_device(collate(ex), backend.device), **kw))
                if shown is not None:
                    shown.update(len(ex))
    finally:
        if shown is not None:
            shown.close()
    model.train()
    backend.release()
    return {k: float(v) for k, v in task.metrics(preds, examples).items()}
