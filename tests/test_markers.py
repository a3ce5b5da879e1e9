"""The markers make test-fast relies on: a multi-rank `launcher` parameter marks a test dist, and a
test not marked dist cannot start ranks."""

import subprocess
import sys

import pytest

from markers import starts_ranks


@pytest.mark.parametrize("launcher", ["python", "fsdp", "deepspeed:zero3"])
def test_a_multi_rank_launcher_parameter_marks_dist(launcher, request):
    assert (request.node.get_closest_marker("dist") is not None) == (launcher != "python")


def test_an_unmarked_test_cannot_start_ranks():
    with pytest.raises(AssertionError, match="mark it @pytest.mark.dist"):
        subprocess.run(["/no/bin/torchrun", "--nproc_per_node", "2", "train.py"])
    with pytest.raises(AssertionError, match="mark it @pytest.mark.dist"):
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "train.py"]
        )
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0


def test_what_starts_ranks():
    assert starts_ranks(["/venv/bin/deepspeed", "--num_gpus", "2", "x.py"]) and starts_ranks(
        "accelerate launch x.py"
    )
    assert not starts_ranks([sys.executable, "launch/train.py", "--fsdp"]) and not starts_ranks(
        ["bash", "run.sh"]
    )
