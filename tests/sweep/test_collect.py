"""collect on hand-written result.json files: mean ± std, best marked, t-tests, a missing cell."""

import csv
import io
import json
from pathlib import Path

import pytest
from scipy.stats import ttest_rel

from beft.sweep.collect import collect
from beft.sweep.spec import parse_spec

SCORES = {"q": [0.60, 0.62, 0.65], "k": [0.50, 0.55, 0.52], "v": [0.70, 0.71, 0.75]}


@pytest.fixture
def filled(tmp_path):
    data = {
        "name": "fake",
        "grid": {
            "model": ["m"],
            "regime": ["low", "high"],
            "task": ["sst2", "rte"],
            "bias": ["q", "k", "v"],
            "seed": [0, 1, 2],
        },
    }
    spec = parse_spec(data, Path("fake.yaml"), root=tmp_path / "sweep")
    for r in spec.runs:
        c = r.config
        if c["task"] == "rte" and c["bias"] == "k":
            continue  # the missing cell
        shift = 0.1 if c["regime"] == "high" else 0.0
        acc = SCORES[c["bias"]][c["seed"]] + shift + (0.01 if c["task"] == "rte" else 0)
        r.output_dir.mkdir(parents=True)
        (r.output_dir / "result.json").write_text(
            json.dumps(
                {
                    "final": {"accuracy": acc},
                    "best": {"accuracy": acc + 0.05},
                    "main_metric": "accuracy",
                }
            )
        )
    return spec


def test_collect_layouts_with_missing_cell(filled, tmp_path):
    files = collect(filled, tmp_path / "out")
    md = files["md"].read_text()
    low = md.split("## model=m, regime=low")[1].split("## ")[0]
    rows = {
        ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
        for ln in low.splitlines()
        if ln.startswith("| ") and not ln.startswith("| target")
    }
    assert rows["b_v"][0] == "**72.0 ± 2.6**"  # best target in bold
    assert rows["b_q"][0] == "62.3 ± 2.5" and rows["b_k"][1] == "—"  # missing is "—", not 0
    p_q = ttest_rel([x * 100 for x in SCORES["v"]], [x * 100 for x in SCORES["q"]]).pvalue
    assert rows["p (v vs q)"][0] == f"{p_q:.3f}" and rows["p (v vs k)"][1] == "—"

    table = list(csv.DictReader(io.StringIO(files["csv"].read_text())))
    assert len(table) == 2 * 3 * 2
    missing = [t for t in table if t["target"] == "k" and t["task"] == "rte"]
    assert all(t["mean"] == "" and t["n"] == "0" and t["best"] == "0" for t in missing)
    v_low = next(
        t for t in table if t["target"] == "v" and t["task"] == "sst2" and t["regime"] == "low"
    )
    assert (
        float(v_low["mean"]) == pytest.approx(72.0)
        and v_low["best"] == "1"
        and v_low["seeds"] == "0 1 2"
    )
    q_low = next(
        t for t in table if t["target"] == "q" and t["task"] == "sst2" and t["regime"] == "low"
    )
    assert float(q_low["p_v_vs_target"]) == pytest.approx(p_q)

    tex = files["tex"].read_text()
    assert r"\textbf{72.0$\pm$2.6}" in tex and "$b_k$ & 52.3$\\pm$2.5 & --- \\\\" in tex
    pngs = [p for k, p in files.items() if k.startswith("png")]
    assert (
        len(pngs) == 1 and pngs[0].stat().st_size > 5000
    )  # one model: a panel per task, x = regime


def test_partial_seeds_marked(filled, tmp_path):
    (filled.runs[0].output_dir / "result.json").unlink()  # m/low/sst2/q seed 0
    md = collect(filled, tmp_path / "out", figs=False)["md"].read_text()
    assert "63.5 ± 2.1 (n=2)" in md
