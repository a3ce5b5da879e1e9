"""The paper's tasks: data loading, prompts/verbalizers, losses and metrics.

    task = get_task("sst2", arch="encoder")   # or task_for("my.csv", "encoder", cfg.data): own data
    splits = task.load(data_dir, regime="low", seed=0)
    batch = task.collate(tokenizer, splits.train[:32], max_length=128)
    loss = task.loss(model, batch); preds = task.predict(model, batch)
    task.metrics(preds, examples)

Every task provides the Task protocol (protocol.py); encoder tasks also HeadTask.
"""

from beft.tasks.base import Splits, TaskDataError
from beft.tasks.custom import label_maps
from beft.tasks.protocol import HeadTask, Task
from beft.tasks.registry import TASKS, get_task, known_task, task_for

__all__ = [
    "TASKS",
    "HeadTask",
    "Splits",
    "Task",
    "TaskDataError",
    "get_task",
    "known_task",
    "label_maps",
    "task_for",
]
