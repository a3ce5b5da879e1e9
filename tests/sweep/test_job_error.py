"""sweep status reads a failed job's error from its stderr log; the result pickle in the sweep root,
which anyone able to write there could plant, is never unpickled."""

import pickle

import pytest
import submitit

from beft.sweep.submitit_exec import job_error


class Plant:
    """Unpickling this creates a file: proof that code from the sweep root ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


TRACEBACK = (
    "submitit ERROR (2026-12-01 10:00:00,000) - Submitted job triggered an exception\n"
    'Traceback (most recent call last):\n  File "worker.py", line 3, in run\n'
    "    raise FileNotFoundError(...)\n"
    "FileNotFoundError: model path /data/model_not_there_yet does not exist\n"
)


@pytest.mark.parametrize(
    "log,want",
    [
        (TRACEBACK, "FileNotFoundError: model path /data/model_not_there_yet does not exist"),
        (
            "step 3/10\rstep 4/10\nerror: loss is nan at step 4; lower lr\n",
            "error: loss is nan at step 4; lower lr",
        ),
        ("all fine\n", None),
    ],
)
def test_job_error_from_log_not_pickle(log, want, tmp_path):
    paths = submitit.core.utils.JobPaths(tmp_path, job_id="123", task_id=0)
    paths.stderr.write_text(log)
    marker = tmp_path / "planted_code_ran"
    with open(paths.result_pickle, "wb") as f:
        pickle.dump(("error", Plant(marker)), f)
    assert job_error(tmp_path, "123") == want
    assert not marker.exists()


def test_job_error_without_log(tmp_path):
    assert job_error(tmp_path, "9") is None
