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
ENCODER["cb"] = partial(EncoderTask, "cb", superglue.SPECS["cb"], 3, "macro_f1", (100, 200, 250),
                        pair("premise", "hypothesis"))
ENCODER["wic"] = partial(EncoderTask, "wic", superglue.SPECS["wic"], 2, "accuracy", (1000, 3000, 5428),
                         lambda ex: (f"{ex['word']}: {ex['sentence1']}", ex["sentence2"]))

# name: (main metric, label metrics reported)
CHOICE_METRICS = {"cb": ("accuracy", "macro_f1"), "multirc": ("f1", "f1"), "record": ("f1", "f1")}
DECODER_SPECS = {"sst2": glue.glue_spec("sst2"), **superglue.SPECS}

DECODER: dict[str, Callable[..., object]] = {
    name: partial(ChoiceTask, name, DECODER_SPECS[name], prompt,
                  *CHOICE_METRICS.get(name, ("accuracy", "accuracy")))
    for name, prompt in CHOICE.items()
}
DECODER.update({name: partial(GenTask, name, qa.SPECS[name], prompt) for name, prompt in GEN.items()})

TASKS: dict[str, tuple[str, ...]] = {"encoder": tuple(ENCODER), "decoder": tuple(DECODER)}


def get_task(name: str, arch: str = "encoder", **options):
    """A task object for `arch`; decoder options: train_objective ('ce' or 'lm')."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    table = ENCODER if arch == "encoder" else DECODER
    key = name.lower().replace("_", "-")
    if key not in table:
        raise ValueError(f"unknown {arch} task {name!r}; valid: {', '.join(table)}")
    return table[key](**options)
