"""The training recipe and what it is made of:

recipe.py   Trainer: setup / train / evaluate / cleanup, over any backend and any step
step.py     the Step protocol, the first-order step, the factory (ZO: beft/zo/step.py)
state.py    TrainState: where training stands, to / from the checkpoint's dict
batches.py  this rank's share of the training set: epoch order, micro-batches, tokens seen
evaluate.py one pass over the evaluation split (every rank, rank 0 shows the bar)
checkpoint.py  save (every rank, committed atomically) and resume the run's checkpoint
adapter_writer.py  adapter/ and adapter_best/ with the base's identity, task and labels
checks.py   what setup refuses (batch divisibility, fused slices on sharded backends, ...)
optim.py    the lr schedule and the AdamW builder
report.py   progress bar, first line, metrics records, memory report, result.json, last line
hooks.py    named points of the loop for fault-injection tests (empty in production)
"""

from .errors import TrainingError
from .recipe import Trainer

__all__ = ["Trainer", "TrainingError"]
