"""Every backend provides what the recipe uses (beft/backends/protocol.py), capabilities included:
a missing method or attribute is a test failure, not a silent default in the loop."""

import typing

import pytest

from beft.backends.ddp import DDPBackend
from beft.backends.deepspeed import DeepSpeedBackend
from beft.backends.fsdp import FSDPBackend
from beft.backends.local import LocalBackend
from beft.backends.protocol import Backend

BACKENDS = [LocalBackend, DDPBackend, DeepSpeedBackend, FSDPBackend]
MEMBERS = [n for n in dir(Backend) if not n.startswith("_")] + list(typing.get_type_hints(Backend))
CAPABILITIES = {  # class -> (kind, shards_parameters, replicated, evaluates_alone)
    LocalBackend: ("local", False, True, True),
    DDPBackend: ("ddp", False, True, False),
    DeepSpeedBackend: ("deepspeed", False, False, False),
    FSDPBackend: ("fsdp", True, False, False),
}


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.__name__)
def test_every_backend_satisfies_the_protocol(cls):
    backend = cls(None)
    assert isinstance(backend, Backend)
    for name in MEMBERS:
        assert hasattr(backend, name), f"{cls.__name__} lacks {name}"
    assert callable(backend.fill_initial) and callable(backend.full_access)
    kind, shards, replicated, alone = CAPABILITIES[cls]
    assert (
        backend.kind,
        backend.shards_parameters,
        backend.replicated,
        backend.evaluates_alone,
    ) == (kind, shards, replicated, alone)
    assert isinstance(backend.title, str) and backend.title
    assert not hasattr(backend, "name")  # reporting reads kind; nothing compares names


def test_zero3_shards_and_says_so():
    backend = DeepSpeedBackend(None)
    backend.stage = 3
    assert backend.shards_parameters and backend.title == "DeepSpeed ZeRO-3"
    backend.stage = 2
    assert not backend.shards_parameters and backend.title == "DeepSpeed ZeRO-2"


def test_a_backend_missing_a_method_fails_the_protocol():
    members = {n: getattr(LocalBackend, n, None) for n in MEMBERS}
    complete = type("Complete", (), members)
    assert isinstance(complete(), Backend)
    for missing in ("fill_initial", "shards_parameters", "full_access"):
        partial = type("Partial", (), {n: v for n, v in members.items() if n != missing})
        assert not isinstance(partial(), Backend), missing
