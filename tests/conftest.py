import os
import subprocess

import pytest
import torch

from markers import starts_ranks
from paths import DATA_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)

# Markers (pyproject): `dist` starts 2 or more ranks, `slow` loads a real pretrained model (or
# measures one); `make test-fast` runs neither. A test parametrized by a multi-rank `launcher` is
# marked dist here; a test not marked dist that starts a multi-rank launcher fails
# (_dist_is_marked).


def pytest_collection_modifyitems(items):
    for item in items:
        launcher = getattr(item, "callspec", None) and item.callspec.params.get("launcher")
        if launcher not in (None, "python") and item.get_closest_marker("dist") is None:
            item.add_marker(pytest.mark.dist)


@pytest.fixture(autouse=True)
def _dist_is_marked(request, monkeypatch):
    """make test-fast deselects `dist`: a test that starts ranks without the marker would run
    there."""
    if request.node.get_closest_marker("dist") is not None:
        return

    class Guarded(subprocess.Popen):
        def __init__(self, args, *a, **kw):
            if starts_ranks(args):
                raise AssertionError(
                    f"{request.node.nodeid} starts several ranks ({args[0]}): "
                    "mark it @pytest.mark.dist"
                )
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Guarded)


@pytest.fixture
def data_dir():
    if not (DATA_DIR / "glue").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    return DATA_DIR
