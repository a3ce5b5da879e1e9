"""Every task (built-in by name, own data of each kind) provides the declared Task protocol, with
the protocol's parameters; encoder tasks (a new head) also HeadTask."""

import inspect

import pytest

from beft.config import load_config
from beft.tasks import TASKS, get_task, task_for
from beft.tasks.protocol import HeadTask, Task
from own_files import classification_folder, completion_file, regression_folder

BUILTIN = [(arch, name) for arch, names in TASKS.items() for name in names]
METHODS = ("load", "collate", "loss", "example_losses", "predict", "metrics")


def data(**kw):
    return load_config(None, {f"data.{k}": v for k, v in kw.items()}).data


def own_tasks(root):
    cls = str(classification_folder(root / "cls", 8, 4))
    return {
        "encoder classification": task_for(cls, "encoder", data(text="sentence")),
        "encoder regression": task_for(
            str(regression_folder(root / "reg", 8, 4)),
            "encoder",
            data(text="sentence", label="score"),
        ),
        "decoder label words": task_for(
            cls,
            "decoder",
            data(template="{sentence} It was", verbalizer="{neg: terrible, pos: great}"),
        ),
        "decoder completion": task_for(
            str(completion_file(root / "qa.jsonl", 20)),
            "decoder",
            data(text="prompt", completion="completion"),
        ),
    }


def check(task, head: bool) -> None:
    assert isinstance(task, Task), task
    assert isinstance(task, HeadTask) == head, task
    assert isinstance(type(task).generates, bool)  # declared on the class, not read by getattr
    for name in METHODS + (("logits", "loss_from_logits") if head else ()):
        want = list(inspect.signature(getattr(HeadTask, name)).parameters)[1:]
        have = inspect.signature(getattr(task, name)).parameters
        assert all(p in have or p == "kw" for p in want), (task.name, name, list(have))


@pytest.mark.parametrize("arch,name", BUILTIN)
def test_builtin_task_is_a_task(arch, name):
    task = get_task(name, arch)
    check(task, head=arch == "encoder")
    assert task.arch == arch and task.generates == (name in ("squad", "drop"))


def test_own_data_tasks_are_tasks(tmp_path):
    for kind, task in own_tasks(tmp_path).items():
        check(task, head=kind.startswith("encoder"))
        assert task.generates is False, kind


def test_a_class_missing_a_method_is_not_a_task():
    class NoPredict:
        name, arch, main_metric, labels, num_labels, generates = (
            "x",
            "encoder",
            "accuracy",
            None,
            2,
            False,
        )

        def load(self, *a, **k): ...
        def collate(self, *a): ...
        def loss(self, *a): ...
        def example_losses(self, *a): ...
        def metrics(self, *a): ...

    assert not isinstance(NoPredict(), Task)
    NoPredict.predict = lambda self, model, batch, **kw: []
    assert isinstance(NoPredict(), Task) and not isinstance(NoPredict(), HeadTask)
    del NoPredict.generates
    assert not isinstance(NoPredict(), Task)
