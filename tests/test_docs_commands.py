"""Every fenced block marked `runnable` in README.md and docs/*.md runs, so the docs cannot rot.

Shell lines run in one scratch folder per file (later lines use what earlier ones wrote, as a
reader would), with `python` = this interpreter, `beft` = `python -m beft`, launchers from this
venv on a free port, PATH = a tiny random BERT, and tiny settings appended to every training
command (2 steps, 16 examples, length 32) so the whole page runs in minutes. Python blocks run as
scripts in the same folder. The own-data examples get small files of the named shapes."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from paths import DATA_DIR, ROOT
from ports import free_port
from tiny import save_tiny

VENV_BIN = Path(sys.executable).parent
TINY = [
    "max_steps=2",
    "data.n_train=16",
    "data.n_eval=16",
    "data.max_length=32",
    "batch_size=8",
    "threads=1",
]
FENCE = re.compile(r"^```(bash|python) runnable\n(.*?)^```", re.S | re.M)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REPO_PATHS = ("launch/", "ds_configs/", "configs/", "slurm/", "examples/", "bench/")


def blocks(page: Path) -> list[tuple[str, str]]:
    return FENCE.findall(page.read_text())


def commands(text: str) -> list[list[str]]:
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def rewrite(words: list[str], tiny_model: str) -> list[str]:
    """A documented command -> the command this test runs."""
    head, rest = words[0], [w.replace("=PATH", f"={tiny_model}") for w in words[1:]]
    if head == "python":
        cmd = [sys.executable, *rest]
    elif head == "beft":
        cmd = [sys.executable, "-m", "beft", *rest]
    elif head in ("deepspeed", "torchrun"):
        cmd = [str(VENV_BIN / head), "--master_port", str(free_port()), *rest]
    else:
        raise AssertionError(
            f"a runnable block starts with {head!r}: teach this test how to run it"
        )
    trains = any(w.endswith("launch/train.py") for w in cmd) or cmd[1:4] == ["-m", "beft", "train"]
    cmd = [
        str(ROOT / w) if w.startswith(REPO_PATHS) else w for w in cmd
    ]  # the docs run from the repo root
    return cmd + TINY if trains else cmd


def own_data(folder: Path) -> None:
    """The files the README's own-data examples name."""
    import pandas as pd

    words = ["good", "bad", "great", "awful", "fine", "poor", "lovely", "dull"]
    rows = [
        {"sentence": f"a {w} film number {i}", "label": ["pos", "neg"][i % 2]}
        for i, w in enumerate(words * 6)
    ]
    (folder / "my_data").mkdir()
    pd.DataFrame(rows[:40]).to_csv(folder / "my_data" / "train.csv", index=False)
    pd.DataFrame(rows[40:]).to_csv(folder / "my_data" / "dev.csv", index=False)
    pd.DataFrame(
        [
            {"s1": r["sentence"], "s2": r["sentence"][::-1], "score": float(i % 5)}
            for i, r in enumerate(rows)
        ]
    ).to_parquet(folder / "scores.parquet")
    pd.DataFrame([{"sentence": r["sentence"], "label": i % 2} for i, r in enumerate(rows)]).to_csv(
        folder / "my.csv", index=False
    )
    with open(folder / "pairs.jsonl", "w") as f:
        for r in rows:
            f.write(
                json.dumps(
                    {
                        "prompt": f"Review: {r['sentence']}\nSentiment:",
                        "completion": f" {r['label']}",
                    }
                )
                + "\n"
            )


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.name)
def test_runnable_blocks_run(page, tmp_path):
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    from beft.models import resolve

    tiny_model = str(save_tiny("bert", tmp_path / "_tiny_bert"))
    own_data(tmp_path)
    env = {
        **os.environ,
        "BEFT_DATA_DIR": str(DATA_DIR),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    for i, (kind, text) in enumerate(blocks(page)):
        if kind == "python":
            script = tmp_path / f"block{i}.py"
            script.write_text(text.replace("path/to/all-MiniLM-L6-v2", resolve("minilm")))
            runs = [[sys.executable, str(script)]]
        else:
            runs = [rewrite(words, tiny_model) for words in commands(text)]
        for cmd in runs:
            p = subprocess.run(
                cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=900
            )
            assert p.returncode == 0, f"{page.name}: {' '.join(cmd)}\n{p.stderr[-2000:]}"


def test_every_page_with_commands_is_checked():
    """The README keeps at least its quickstart runnable (a renamed fence would skip it
    silently)."""
    kinds = [k for k, _ in blocks(ROOT / "README.md")]
    assert kinds.count("bash") >= 2 and "python" in kinds
