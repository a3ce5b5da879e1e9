"""collect never succeeds silently with nothing: no finished run is a one-line error (exit 2) that
writes no table; a partly finished sweep says how many runs the tables hold."""

import json

import pytest

from beft.cli import run
from beft.sweep.cli import main
from beft.sweep.collect import NothingFinished, collect


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        json.dumps(
            {
                "name": "empty",
                "root": str(tmp_path / "sweep"),
                "grid": {"model": ["m"], "task": ["sst2"], "bias": ["q", "v"], "seed": [0, 1]},
            }
        )
    )
    return p


def test_nothing_finished_is_an_error_writing_nothing(spec_file, tmp_path, capsys):
    from beft.sweep.spec import load_spec

    spec = load_spec(str(spec_file))
    with pytest.raises(NothingFinished, match="no run of sweep empty has finished .*0 of 4"):
        collect(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as e:
        run(main, ["collect", str(spec_file), "--out", str(tmp_path / "out"), "--no-figures"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to collect" in err[0]


def test_partly_finished_says_how_many(spec_file, tmp_path, capsys):
    from beft.sweep.spec import load_spec

    spec = load_spec(str(spec_file))
    r = spec.runs[0]
    r.output_dir.mkdir(parents=True)
    (r.output_dir / "result.json").write_text(
        json.dumps({"final": {"accuracy": 0.7}, "main_metric": "accuracy"})
    )
    assert main(["collect", str(spec_file), "--out", str(tmp_path / "out"), "--no-figures"]) == 0
    assert "collected 1 of 4 runs; the 3 without a score show as —" in capsys.readouterr().err
    assert (tmp_path / "out" / "empty.md").is_file()
