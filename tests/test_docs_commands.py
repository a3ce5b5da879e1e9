"""Every fenced block marked `runnable` in README.md and docs/*.md runs, so the docs cannot rot.

Shell lines run in one scratch folder per file (later lines use what earlier ones wrote, as a
reader would), with `python` = this interpreter, `beft` = `python -m beft`, launchers from this
venv on a free port, PATH = a tiny random BERT, and tiny settings appended to every command that
trains (2 steps, 16 examples, length 32: training and ranking runs), to benchmarks (one round at
2 x 16 tokens, no memory workers) and to the sweeps a page submits (the first value of each grid
axis, the tiny settings in `config:`), so the whole page runs in minutes. beft's own commands
(`beft`, launch/*.py, slurm/sweep.py, bench/throughput.py) and python blocks (scripts in the same
folder) run in this process (tests/inprocess.py: no new Python, torch and transformers per line);
launchers and other scripts run as processes. The own-data examples get small files of the named
shapes. A YAML block that names a shipped file in its first line shows that file exactly."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inprocess import run_main, run_script
from markers import starts_ranks
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
BENCH_TINY = ["--rounds", "1", "--batch", "2", "--seq", "16", "--no-memory"]
FENCE = re.compile(r"^```(bash|python) runnable\n(.*?)^```", re.S | re.M)
YAML_FENCE = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REPO_PATHS = ("launch/", "ds_configs/", "configs/", "slurm/", "examples/", "bench/")
IN_PROCESS = ("launch/", "slurm/sweep.py", "bench/throughput.py")  # scripts with main(argv)


def blocks(page: Path) -> list[tuple[str, str]]:
    return FENCE.findall(page.read_text())


def commands(text: str) -> list[list[str]]:
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def page_commands(page: Path) -> list[list[str]]:
    return [w for kind, text in blocks(page) if kind == "bash" for w in commands(text)]


def tool(words: list[str]) -> str | None:
    """The beft tool a documented command runs (train, rank, sweep, throughput, ...)."""
    if words[0] == "beft":
        return words[1] if len(words) > 1 else None
    script = next((w for w in words[1:] if w.endswith(".py")), None)
    return Path(script).stem if script else None


def tiny_args(words: list[str]) -> list[str]:
    """The tiny settings appended to a documented command (last wins: they override its own)."""
    name = tool(words)
    no_training = "--figure" in words or any(w.startswith("from_run=") for w in words)
    if name == "train" or (name == "rank" and not no_training):  # a ranking run trains first
        return TINY
    return BENCH_TINY if name == "throughput" else []


def submitted_specs(page: Path) -> set[str]:
    """The sweep specs a page submits for real (not --dry-run): they run tiny, on every line of
    the page (status and collect must see the same runs)."""
    return {
        words[words.index("submit") + 1]
        for words in page_commands(page)
        if tool(words) == "sweep"
        and "submit" in words
        and "--dry-run" not in words
        and "dry_run=true" not in words
    }


def tiny_spec(spec: str, folder: Path) -> Path:
    """A copy of a sweep spec that runs in seconds: one value per grid axis (overrides of the
    others dropped), TINY in `config` (and out of the per-model / per-task overrides, which would
    win over it)."""
    data = yaml.safe_load((ROOT / spec).read_text())
    tiny = {k: yaml.safe_load(v) for k, v in (t.split("=", 1) for t in TINY)}
    data["grid"] = {k: (v if isinstance(v, list) else [v])[:1] for k, v in data["grid"].items()}
    data["config"] = {**data.get("config", {}), **tiny}
    for section, axis in (("per_model", "model"), ("per_task", "task")):
        data[section] = {
            name: {k: v for k, v in over.items() if k not in tiny}
            for name, over in (data.get(section) or {}).items()
            if name in data["grid"].get(axis, [])
        }
    out = folder / "_tiny_specs" / Path(spec).name
    out.parent.mkdir(exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def rewrite(words: list[str], tiny_model: str, specs: dict[str, Path] | None = None) -> list[str]:
    """A documented command -> the command this test runs (specs: spec -> its tiny copy)."""
    head, specs = words[0], specs or {}
    rest = [str(specs.get(w, w)).replace("=PATH", f"={tiny_model}") for w in words[1:]]
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
    cmd = [
        str(ROOT / w) if w.startswith(REPO_PATHS) else w for w in cmd
    ]  # the docs run from the repo root
    return cmd + tiny_args(words)


def execute(cmd: list[str], cwd: Path, env: dict):
    """beft's own commands in this process, anything else (launchers, scripts) as a process;
    env: the variables set on top of this process's."""
    if cmd[0] == sys.executable and cmd[1:3] == ["-m", "beft"]:
        from beft.commands import main

        return run_main(main, cmd[3:], env=env, cwd=cwd)
    if cmd[0] == sys.executable and cmd[1].startswith(tuple(str(ROOT / p) for p in IN_PROCESS)):
        return run_script(cmd[1], cmd[2:], env=env, cwd=cwd)
    return subprocess.run(
        cmd, cwd=str(cwd), env={**os.environ, **env}, capture_output=True, text=True, timeout=900
    )


def run_block(script: Path, cwd: Path, env: dict):
    """A python block as `python SCRIPT` runs it, in this process."""
    import runpy

    def main(argv: list[str]) -> int:
        runpy.run_path(str(script), run_name="__main__")
        return 0

    return run_main(main, [], env=env, cwd=cwd, argv0=str(script))


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


def page_param(page: Path):
    """A page whose commands start several ranks is marked dist (make test-fast leaves it out)."""
    ranks = any(starts_ranks(words) for words in page_commands(page))
    return pytest.param(page, id=page.name, marks=[pytest.mark.dist] if ranks else [])


@pytest.mark.slow
@pytest.mark.parametrize("page", [page_param(p) for p in PAGES if blocks(p)])
def test_runnable_blocks_run(page, tmp_path):
    if not (DATA_DIR / "glue" / "SST-2").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    from beft.models import resolve

    tiny_model = str(save_tiny("bert", tmp_path / "_tiny_bert"))
    own_data(tmp_path)
    specs = {s: tiny_spec(s, tmp_path) for s in submitted_specs(page)}
    env = {
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
            p = run_block(script, tmp_path, env)
            assert p.returncode == 0, f"{page.name}: python block {i}\n{p.stderr[-2000:]}"
            continue
        for cmd in [rewrite(words, tiny_model, specs) for words in commands(text)]:
            p = execute(cmd, tmp_path, env)
            assert p.returncode == 0, f"{page.name}: {' '.join(cmd)}\n{p.stderr[-2000:]}"


def test_every_command_block_in_docs_is_runnable():
    """A bash / python fence without the `runnable` mark (a typo, a copied block) would drop out of
    the test above silently. Only README's set-up blocks (pip install, make) are not run."""
    fence = re.compile(r"^```(bash|python)([^\n]*)\n(.*?)^```", re.S | re.M)
    unmarked = [
        (page.name, body.split()[0])
        for page in PAGES
        for _, mark, body in fence.findall(page.read_text())
        if mark.strip() != "runnable"
    ]
    setup = [(p, w) for p, w in unmarked if p == "README.md" and w in ("pip", "make")]
    assert unmarked == setup and setup, unmarked


def test_every_page_with_commands_is_checked():
    """The README keeps at least its quickstart runnable (a renamed fence would skip it
    silently)."""
    kinds = [k for k, _ in blocks(ROOT / "README.md")]
    assert kinds.count("bash") >= 2 and "python" in kinds


def test_shown_specs_are_the_shipped_files():
    """A YAML block whose first line names a file of the repo (`# python slurm/sweep.py submit
    slurm/sweeps/x.yaml ...`) is that file, every line, so the page cannot drift from it."""
    shown = [
        (page, text)
        for page in PAGES
        for text in YAML_FENCE.findall(page.read_text())
        if re.search(r"\S+\.yaml", text.splitlines()[0])
    ]
    assert shown, "docs/sweeps.md shows a complete example spec"
    for page, text in shown:
        path = next(w for w in text.splitlines()[0].split() if w.endswith(".yaml"))
        assert text == (ROOT / path).read_text(), f"{page.name}: the spec shown differs from {path}"
