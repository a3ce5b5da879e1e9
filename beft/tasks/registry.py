"""The task table: (arch, name) -> a factory taking the task's keyword options."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from beft.tasks import glue, qa, superglue
from beft.tasks.decoder import ChoiceTask
from beft.tasks.encoder import EncoderTask, pair
from beft.tasks.generation import GenTask
from beft.tasks.prompts import CHOICE, GEN

ARCHS = ("encoder", "decoder")

# name: (num_labels, main metric, low/medium/high train sizes)
GLUE_ENCODER = {
    "sst2": (2, "accuracy", (1000, 5000, 11000)),
    "cola": (2, "mcc", (1710, 3420, 4275)),
    "mrpc": (2, "f1", (367, 1191, 1835)),
    "stsb": (1, "spearman", (287, 1150, 2300)),
    "qqp": (2, "f1", (1000, 5000, 9000)),
    "qnli": (2, "accuracy", (1000, 5000, 9000)),
    "mnli": (3, "accuracy", (1000, 5000, 9000)),
    "mnli-mm": (3, "accuracy", (1000, 5000, 9000)),
    "rte": (2, "accuracy", (300, 900, 1200)),
}

ENCODER: dict[str, Callable[..., object]] = {
    name: partial(EncoderTask, name, glue.glue_spec(name), n, metric, sizes)
    for name, (n, metric, sizes) in GLUE_ENCODER.items()
}
ENCODER["cb"] = partial(
    EncoderTask,
    "cb",
    superglue.SPECS["cb"],
    3,
    "macro_f1",
    (100, 200, 250),
    pair("premise", "hypothesis"),
)
ENCODER["wic"] = partial(
    EncoderTask,
    "wic",
    superglue.SPECS["wic"],
    2,
    "accuracy",
    (1000, 3000, 5428),
    lambda ex: (f"{ex['word']}: {ex['sentence1']}", ex["sentence2"]),
)

# name: (main metric, label metrics reported)
CHOICE_METRICS = {"cb": ("accuracy", "macro_f1"), "multirc": ("f1", "f1"), "record": ("f1", "f1")}
DECODER_SPECS = {"sst2": glue.glue_spec("sst2"), **superglue.SPECS}

DECODER: dict[str, Callable[..., object]] = {
    name: partial(
        ChoiceTask,
        name,
        DECODER_SPECS[name],
        prompt,
        *CHOICE_METRICS.get(name, ("accuracy", "accuracy")),
    )
    for name, prompt in CHOICE.items()
}
DECODER.update(
    {name: partial(GenTask, name, qa.SPECS[name], prompt) for name, prompt in GEN.items()}
)

TASKS: dict[str, tuple[str, ...]] = {"encoder": tuple(ENCODER), "decoder": tuple(DECODER)}


def builtin(name: str) -> bool:
    key = name.lower().replace("_", "-")
    return key in ENCODER or key in DECODER


def known_task(name: str) -> bool:
    """A built-in task, or own data: an existing path, a data file's name, or a hub id
    (owner/name)."""
    from beft.tasks.files import is_data_path

    return builtin(name) or is_data_path(name) or "/" in name


def task_for(name: str, arch: str, data):
    """The task a run trains: a built-in one by name, else own data (a file, folder or hub dataset
    id)
    read and checked now with the data.* options (`data`: beft.config.DataConfig)."""
    if builtin(name) or not known_task(name):
        return get_task(
            name, arch, **({"train_objective": data.train_objective} if arch == "decoder" else {})
        )
    from beft.tasks.custom import own_task

    return own_task(name, arch, data)


def get_task(name: str, arch: str = "encoder", **options):
    """A task object for `arch`; decoder options: train_objective ('ce' or 'lm')."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    table = ENCODER if arch == "encoder" else DECODER
    key = name.lower().replace("_", "-")
    if key not in table:
        raise ValueError(
            f"unknown {arch} task {name!r}; valid: {', '.join(table)}; or own data: a path to a "
            ".csv/.tsv/.json/.jsonl/.parquet file or folder, or a hub dataset id (owner/name)"
        )
    return table[key](**options)
