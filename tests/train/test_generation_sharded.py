"""Generation (SQuAD) under ZeRO-3 and FSDP2 on 2 ranks whose answers have different lengths: the
ranks that finish first keep running forwards with the others (synced_gpus), so the evaluation ends
instead of hanging in a parameter all-gather."""

from pathlib import Path

import pytest

from beft.tasks import get_task
from beft.tasks.registry import DECODER, ENCODER
from train_helpers import base_args, launch

SCRIPT = Path(__file__).parent / "generate_ranks.py"


def test_every_task_declares_whether_it_generates():
    for arch, table in (("encoder", ENCODER), ("decoder", DECODER)):
        for name in table:
            assert type(get_task(name, arch=arch).generates) is bool, name
    assert (
        get_task("squad", arch="decoder").generates
        and not get_task("rte", arch="decoder").generates
    )


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["deepspeed:zero3", "fsdp"])
def test_uneven_generation_lengths_finish(launcher, tiny_dirs, need_data, tmp_path):
    args = base_args(
        tiny_dirs["llama"],
        tmp_path / "run",
        task="squad",
        **{"data.n_train": 8, "data.n_eval": 4, "data.eval_batch_size": 4, "data.max_length": 48},
    )
    p = launch(args, launcher=launcher, script=SCRIPT, timeout=400)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "rank 0 generated [2]" in p.stdout and "rank 1 generated [12]" in p.stdout, out[-4000:]
