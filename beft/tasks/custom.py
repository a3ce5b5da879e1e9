"""Own data as a task: task=FILE | FOLDER | HUB_ID with the data.* options (beft/config.py
DataConfig).

    encoder, classification  texts (data.text: one column or a pair; or data.template) -> a new head
                             over the classes; accuracy + macro F1 (main: accuracy)
    encoder, regression      float labels -> one output trained with MSE; Pearson + Spearman (main)
    decoder, label words     prompt (data.template) + one word per class (data.verbalizer), scored
                             like the built-in prompt tasks (decoder.py); accuracy + macro F1
    decoder, completion      data.completion: trained and scored by the completion's log-likelihood
                             given the prompt (completion.py)

Both splits are read, their columns and labels checked, and the classes fixed here, when the
task is built: before any model loads. Class names travel with the task (`labels`) into the
adapter metadata as id2label / label2id.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable

from beft.tasks.base import TaskDataError
from beft.tasks.completion import CompletionTask
from beft.tasks.files import Source, open_source
from beft.tasks.own_rows import OwnChoiceTask, OwnEncoderTask, OwnRows
from beft.tasks.prompts import ChoicePrompt, words

EVAL_NAMES = ("validation", "dev", "valid", "val", "eval")


def label_maps(labels: tuple[str, ...] | None) -> dict:
    """Adapter metadata for a task's class names: id2label / label2id, as transformers' config holds
    them."""
    if not labels:
        return {}
    return {
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def template_fields(template: str) -> list[str]:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    return list(dict.fromkeys(f.split(".")[0].split("[")[0] for f in fields))


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def label_key(value) -> str:
    """A label as a class name: 1, 1.0 and '1' are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class Columns:
    """Which columns each example reads, and how they become a prompt / text pair."""

    def __init__(self, opts, arch: str):
        self.opts, self.arch = opts, arch
        self.texts = template_fields(opts.template) if opts.template else list(opts.text)
        self.target = opts.completion or opts.label
        self.option = {c: "data.template" if opts.template else "data.text" for c in self.texts}
        self.option[self.target] = "data.completion" if opts.completion else "data.label"
        if arch == "encoder" and not opts.template and len(self.texts) > 2:
            raise TaskDataError(
                f"data.text names {len(self.texts)} columns; an encoder reads one text or a "
                "pair: join more with data.template, e.g. data.template='{a} {b} {c}'"
            )

    def check(self, rows: list[dict], where: str) -> None:
        have = list(rows[0])
        for c in [*self.texts, self.target]:
            if c not in have:
                raise TaskDataError(
                    f"{where}: no column '{c}' (columns: {', '.join(have)}); set "
                    f"{self.option[c]} to one of them"
                )
        for i, row in enumerate(rows):
            for c in [*self.texts, self.target]:
                if missing(row[c]):
                    raise TaskDataError(f"{where} row {i + 1}: column '{c}' is empty")

    def prompt(self, row: dict) -> str:
        if self.opts.template:
            return self.opts.template.format(**{c: row[c] for c in self.texts})
        return "\n".join(str(row[c]) for c in self.texts)

    def pair(self, row: dict) -> tuple[str, str | None]:
        if self.opts.template or len(self.texts) == 1:
            return self.prompt(row), None
        return str(row[self.texts[0]]), str(row[self.texts[1]])


def label_kind(values: list, opts, arch: str) -> str:
    kind = opts.label_type
    if kind == "auto":
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        kind = (
            "regression"
            if numeric and any(isinstance(v, float) and not v.is_integer() for v in values)
            else "classification"
        )
    if kind == "regression" and arch == "decoder":
        raise TaskDataError(
            f"data.label '{opts.label}' holds numbers (regression), which a decoder does not score;"
            " use an encoder model, or data.label_type=classification with data.verbalizer"
        )
    return kind


def named(rows: list[dict], column: str, names: list[str]) -> list[dict]:
    """Hub ClassLabel ids -> their names (-1, an unlabeled row, stays and is refused as no
    class)."""
    return [
        {**r, column: names[r[column]] if 0 <= r[column] < len(names) else r[column]} for r in rows
    ]


def classes(values: list, opts, where: str, declared: list[str] | None = None) -> tuple[str, ...]:
    """The class names in id order: data.verbalizer's keys, else the dataset's declared names (a hub
    ClassLabel), else the train labels sorted."""
    keys = {label_key(v) for v in values}
    if declared and not opts.verbalizer:
        return tuple(declared)
    if opts.verbalizer:
        extra = sorted(keys - set(opts.verbalizer))
        if extra:
            raise TaskDataError(
                f"{where}: label '{extra[0]}' has no word in data.verbalizer "
                f"({', '.join(opts.verbalizer)}); add one"
            )
        return tuple(opts.verbalizer)
    if len(keys) < 2:
        raise TaskDataError(
            f"{where}: every example has label '{next(iter(keys))}'; a classifier needs two or "
            "more classes (numbers to regress: data.label_type=regression)"
        )
    try:
        return tuple(sorted(keys, key=float))
    except ValueError:
        return tuple(sorted(keys))


def class_ids(
    rows: list[dict], column: str, names: tuple[str, ...], where: str, against: str
) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    out = []
    for i, row in enumerate(rows):
        key = label_key(row[column])
        if key not in index:
            raise TaskDataError(
                f"{where} row {i + 1}: label '{key}' is not a class of {against} "
                f"({', '.join(names)}); fix the row or the labels"
            )
        out.append(index[key])
    return out


def scores(rows: list[dict], column: str, where: str) -> list[float]:
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(float(row[column]))
        except (TypeError, ValueError):
            raise TaskDataError(
                f"{where} row {i + 1}: label '{row[column]}' is not a number "
                "(regression); or set data.label_type=classification"
            ) from None
    return out


def pick_eval(source: Source, opts) -> str | None:
    """The eval split's name, or None: hold one out of train."""
    if opts.eval_split != "auto":
        if opts.eval_split not in source.splits:
            raise TaskDataError(
                f"task {source.name!r}: no split '{opts.eval_split}' (splits: "
                f"{', '.join(source.splits)}); set data.eval_split to one, or auto"
            )
        return opts.eval_split
    return next((s for s in EVAL_NAMES if s in source.splits and s != opts.train_split), None)


def own_task(name: str, arch: str, opts):
    """Read, check and convert `name`'s train and eval splits into a task for `arch`."""
    source = open_source(name)
    if opts.train_split not in source.splits:
        raise TaskDataError(
            f"task {name!r}: no split '{opts.train_split}' (splits: {', '.join(source.splits)}); "
            "set data.train_split to one (a file's name gives its split: train.csv)"
        )
    if opts.completion and arch == "encoder":
        raise TaskDataError(
            "data.completion (prompt/completion pairs) trains a decoder's LM; use a decoder model"
        )
    eval_name = pick_eval(source, opts)
    cols = Columns(opts, arch)
    raw = {s: source.read(s) for s in (opts.train_split, eval_name) if s is not None}
    for split, rows in raw.items():
        cols.check(rows, source.where(split))
    train_where = source.where(opts.train_split)
    convert = _completion if opts.completion else _classes
    task, examples, notes = convert(name, arch, opts, cols, raw, train_where, source, eval_name)
    ev = examples.get(eval_name) if eval_name else None
    rows = OwnRows(
        name,
        examples[opts.train_split],
        train_where,
        ev,
        source.where(eval_name) if eval_name else "",
        opts.eval_fraction,
        tuple(notes),
    )
    return task(rows)


def _completion(name, arch, opts, cols, raw, train_where, source, eval_name):
    examples = {
        s: [{"prompt": cols.prompt(r), "completion": str(r[opts.completion])} for r in rows]
        for s, rows in raw.items()
    }
    return (lambda rows: CompletionTask(name, rows)), examples, []


def _classes(name, arch, opts, cols, raw, train_where, source, eval_name):
    declared = source.classes.get(opts.label)
    if declared:
        raw = {s: named(rows, opts.label, declared) for s, rows in raw.items()}
    train = raw[opts.train_split]
    kind = label_kind([r[opts.label] for r in train], opts, arch)
    notes = []
    if kind == "regression":
        names: tuple[str, ...] | None = None
        labels = {s: scores(rows, opts.label, source.where(s)) for s, rows in raw.items()}
    else:
        names = classes([r[opts.label] for r in train], opts, train_where, declared)
        against = "data.verbalizer" if opts.verbalizer else f"the train split ({train_where})"
        labels = {
            s: class_ids(rows, opts.label, names, source.where(s), against)
            for s, rows in raw.items()
        }
        notes.append(f"{name}: {len(names)} classes {', '.join(names)}")
    text: Callable[[dict], object] = cols.pair if arch == "encoder" else cols.prompt
    examples = {
        s: [{"text": text(r), "label": y} for r, y in zip(rows, labels[s])]
        for s, rows in raw.items()
    }
    if arch == "encoder":
        n, main, metric = (
            (1, "spearman", "") if names is None else (len(names), "accuracy", "macro_f1")
        )
        return (
            (
                lambda rows: OwnEncoderTask(
                    name,
                    None,
                    n,
                    main,
                    (0, 0, 0),
                    lambda ex: ex["text"],
                    metric_kind=metric,
                    labels=names,
                    rows=rows,
                )
            ),
            examples,
            notes,
        )
    spoken = [opts.verbalizer.get(c, c) for c in names]
    if not opts.verbalizer:
        notes.append(
            f"{name}: label words are the labels themselves; set data.verbalizer to choose them"
        )
    cands = [w if w[:1].isspace() or opts.template[-1:].isspace() else " " + w for w in spoken]
    prompt = ChoicePrompt(lambda ex: ex["text"], words(*cands))
    return (
        (
            lambda rows: OwnChoiceTask(
                name,
                None,
                prompt,
                "accuracy",
                "macro_f1",
                opts.train_objective,
                labels=names,
                rows=rows,
            )
        ),
        examples,
        notes,
    )
