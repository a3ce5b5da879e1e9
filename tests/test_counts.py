"""Counts: the one trainable-count type; its dict is result.json's "trainable" entry, key for
key."""

import json

from beft.bias import in_head
from beft.counts import Counts


def test_bias_counts_sum_targets_and_head():
    c = Counts(1000, {"q": 64, "v": 32}, head=130)
    assert (c.bias, c.trainable, c.bias_per_mille) == (96, 226, 96.0)
    assert json.dumps(c.as_dict()) == json.dumps(
        {
            "per_target": {"q": 64, "v": 32},
            "bias": 96,
            "head": 130,
            "trainable": 226,
            "total": 1000,
            "bias_per_mille": 96.0,
        }
    )


def test_optional_entries_keep_their_place():
    assert list(Counts(10, adapter=4, head=2).as_dict()) == [
        "per_target",
        "bias",
        "adapter",
        "head",
        "trainable",
        "total",
        "bias_per_mille",
    ]
    assert Counts(10, adapter=4, head=2).trainable == 6
    rand = Counts(10, {"random": 3}, tensors_touched=2, reparam={"kind": "lora"}).as_dict()
    assert list(rand)[-2:] == ["tensors_touched", "reparam"] and rand["trainable"] == 3


def test_a_stated_trainable_wins_and_nothing_is_zero_division():
    assert Counts(5, trainable=5).as_dict() == {
        "per_target": {},
        "bias": 0,
        "head": 0,
        "trainable": 5,
        "total": 5,
        "bias_per_mille": 0.0,
    }
    assert Counts(0).bias_per_mille == 0.0


def test_in_head_matches_whole_module_names():
    head = ["classifier", "bert.pooler.dense"]
    assert in_head("classifier.weight", head) and in_head("classifier", head)
    assert in_head("bert.pooler.dense.bias", head)
    assert not in_head("classifier2.weight", head) and not in_head("bert.pooler.weight", head)
    assert not in_head("classifier.weight", [])
