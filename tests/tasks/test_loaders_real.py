"""Loaders on the real GLUE / SuperGLUE / SQuAD files (skipped without them)."""

import pytest

from beft.tasks import TASKS, get_task

ENCODER_SIZES = [
    ("sst2", "low", 1000),
    ("sst2", "medium", 5000),
    ("sst2", "high", 11000),
    ("sst2", "all", 67349),
    ("rte", "low", 300),
    ("rte", "high", 1200),
    ("cola", "medium", 3420),
    ("mrpc", "high", 1835),
    ("stsb", "low", 287),
    ("cb", "medium", 200),
    ("wic", "high", 5428),
    ("qnli", "low", 1000),
]
LOCAL = {  # (arch, name) with local files; labels must be in range
    ("encoder", n) for n in ("sst2", "cola", "mrpc", "stsb", "qnli", "rte", "cb", "wic")
} | {("decoder", n) for n in ("sst2", "rte", "cb", "boolq", "wsc", "wic", "multirc", "copa")}


def key(ex: dict) -> str:
    return repr(sorted((k, str(v)) for k, v in ex.items()))


@pytest.mark.parametrize("name,regime,n", ENCODER_SIZES)
def test_encoder_regime_sizes(task_data, name, regime, n):
    splits = get_task(name, arch="encoder").load(task_data, regime, seed=1)
    assert len(splits.train) == n
    assert splits.notes


def test_encoder_eval_is_whole_dev_split(task_data):
    assert len(get_task("sst2").load(task_data, "low", 0).eval) == 872
    assert len(get_task("stsb").load(task_data, "low", 0).eval) == 1500
    assert len(get_task("sst2").load(task_data, "low", 0, n_train=10, n_eval=20).eval) == 20


def test_same_seed_same_subsets_other_seed_differs(task_data):
    task = get_task("sst2", arch="encoder")
    a, b, c = (task.load(task_data, "low", s) for s in (3, 3, 4))
    assert [key(x) for x in a.train] == [key(x) for x in b.train]
    assert {key(x) for x in a.train} != {key(x) for x in c.train}


@pytest.mark.parametrize(
    "arch,name",
    [("encoder", "qnli"), ("decoder", "boolq"), ("decoder", "wsc"), ("decoder", "squad")],
)
def test_one_file_draws_are_disjoint(task_data, arch, name):
    splits = get_task(name, arch=arch).load(task_data, "low", seed=2)
    assert splits.train and splits.eval
    assert not {key(x) for x in splits.train} & {key(x) for x in splits.eval}
    assert any("disjointly" in n for n in splits.notes)


def test_multirc_split_keeps_passages_apart(task_data):
    splits = get_task("multirc", arch="decoder").load(
        task_data, "low", seed=0, n_train=300, n_eval=300
    )
    assert len(splits.train) == 300 and len(splits.eval) == 300
    assert not {x["qid"][0] for x in splits.train} & {x["qid"][0] for x in splits.eval}


def test_decoder_default_sizes(task_data):
    boolq = get_task("boolq", arch="decoder").load(task_data, "low", 0)
    assert (len(boolq.train), len(boolq.eval)) == (1000, 1000)
    copa = get_task("copa", arch="decoder").load(task_data, "low", 0)
    assert (len(copa.train), len(copa.eval)) == (400, 100)  # capped by the files


@pytest.mark.parametrize("arch,name", sorted(LOCAL))
def test_labels_valid(task_data, arch, name):
    task = get_task(name, arch=arch)
    splits = task.load(task_data, "low", seed=0, n_train=200, n_eval=50)
    for ex in splits.train + splits.eval:
        if task.num_labels == 1:
            assert 0.0 <= ex["label"] <= 5.0
        elif arch == "encoder":
            assert ex["label"] in range(task.num_labels)
        else:
            assert ex["label"] in range(len(task.prompt.candidates(ex)))
            assert task.prompt.prompt(ex)


def test_every_local_task_is_registered():
    assert {n for a, n in LOCAL} <= set(TASKS["encoder"]) | set(TASKS["decoder"])
