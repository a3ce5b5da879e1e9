"""The training recipe and what it is made of:

recipe.py   Trainer: setup / train / evaluate / cleanup, over any backend and any step
step.py     the Step protocol, the first-order step, the factory (ZO: beft/zo/step.py)
state.py    TrainState: where training stands, to / from the checkpoint's dict
checks.py   what setup refuses (batch divisibility, fused slices on sharded backends, ...)
optim.py    the lr schedule and the AdamW builder
report.py   progress bar, memory report, the last line
hooks.py    named points of the loop for fault-injection tests (empty in production)
"""

from .errors import TrainingError
from .recipe import Trainer

__all__ = ["Trainer", "TrainingError"]
