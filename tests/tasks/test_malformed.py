"""Malformed or missing files raise TaskDataError naming the file and line."""

import json

import pytest

from beft.tasks import TaskDataError, get_task


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_bad_tsv_label_names_file_and_line(tmp_path):
    rows = "".join(f"sentence {i}\t{i % 2}\n" for i in range(15))
    write(tmp_path, "glue/SST-2/train.tsv", "sentence\tlabel\n" + rows + "oops\tx\n")
    write(tmp_path, "glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\n")
    with pytest.raises(
        TaskDataError, match=r"glue/SST-2/train.tsv line 17: label 'x' is not one of 0,1"
    ):
        get_task("sst2").load(str(tmp_path), "all", 0)


def test_missing_tsv_column(tmp_path):
    write(
        tmp_path,
        "glue/RTE/dev.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\n",
    )
    with pytest.raises(TaskDataError, match=r"glue/RTE/dev.tsv line 3: missing column 'label'"):
        get_task("rte").load(str(tmp_path), "all", 0)


def test_non_json_line(tmp_path):
    good = json.dumps({"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0})
    write(tmp_path, "superglue/CB/val.jsonl", good + "\n" + good + "\n{not json\n")
    with pytest.raises(TaskDataError, match=r"superglue/CB/val.jsonl line 3: not valid JSON"):
        get_task("cb", arch="decoder").load(str(tmp_path), "all", 0)


def test_missing_json_field_and_bad_bool_label(tmp_path):
    write(tmp_path, "superglue/BoolQ/val.jsonl", json.dumps({"passage": "p", "label": True}) + "\n")
    with pytest.raises(TaskDataError, match=r"BoolQ/val.jsonl line 1: missing field 'question'"):
        get_task("boolq", arch="decoder").load(str(tmp_path), "all", 0)
    write(
        tmp_path,
        "superglue/BoolQ/val.jsonl",
        json.dumps({"passage": "p", "question": "q", "label": "maybe"}) + "\n",
    )
    with pytest.raises(TaskDataError, match=r"line 1: label 'maybe' is not one of False,True"):
        get_task("boolq", arch="decoder").load(str(tmp_path), "all", 0)


def test_bad_regression_score(tmp_path):
    head = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    )
    write(tmp_path, "glue/STS-B/dev.tsv", head + "0\tg\tf\ty\t0\ts\ts\ta\tb\tfive\n")
    with pytest.raises(
        TaskDataError, match=r"glue/STS-B/dev.tsv line 2: score 'five' is not a number"
    ):
        get_task("stsb").load(str(tmp_path), "all", 0)


def test_no_data_dir_names_env_var_and_layout(monkeypatch):
    monkeypatch.delenv("BEFT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskDataError, match=r"BEFT_DATA_DIR.*<data_dir>/glue/SST-2/train.tsv"):
        get_task("sst2").load(None, "low", 0)


def test_missing_file_names_env_var_and_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("BEFT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskDataError, match=r"BEFT_DATA_DIR.*<data_dir>/glue/SST-2/dev.tsv"):
        get_task("sst2").load(None, "low", 0)
    assert issubclass(TaskDataError, ValueError)


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown decoder task 'stsb'.*sst2.*squad"):
        get_task("stsb", arch="decoder")
    with pytest.raises(ValueError, match=r"unknown encoder task 'squad'.*sst2.*mnli-mm"):
        get_task("squad", arch="encoder")
    with pytest.raises(ValueError, match="regime"):
        get_task("sst2").load(None, "huge", 0)
