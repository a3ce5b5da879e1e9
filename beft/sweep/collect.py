"""Finished runs -> the paper's layouts: one table per (model, regime, ...) with targets as rows and
tasks as columns; mean ± std over seeds, the best target per column marked, paired t-tests
(v vs q, v vs k over the seeds both have), as Markdown, CSV and LaTeX; PNG figures of each
target's score across regimes. Read-only over run directories: a missing run is a missing cell
("—"), never a zero.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from beft.sweep.spec import Run, Spec

MISSING = "—"
NOT_GROUPED = ("task", "seed", "bias", "method")  # axes inside a table; the rest name the table


@dataclass
class Cell:
    values: dict[int, float] = field(default_factory=dict)  # seed -> score

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values.values()) / self.n if self.n else None

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return 0.0 if self.n else None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values.values()) / (self.n - 1))


@dataclass
class Table:
    key: tuple  # ((axis, value), ...) naming the table
    tasks: list[str]
    targets: list[str]
    cells: dict  # (target, task) -> Cell
    expected_seeds: int
    pvalues: dict = field(default_factory=dict)  # (other target, task) -> p for v vs other

    @property
    def title(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.key) or "all runs"

    def best(self, task: str) -> set[str]:
        means = {t: self.cells[(t, task)].mean for t in self.targets if self.cells[(t, task)].n}
        if not means:
            return set()
        top = max(means.values())
        return {t for t, m in means.items() if m == top}


def score(run: Run, metric: str, scale: float) -> float | None:
    path = run.output_dir / "result.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    block = res.get(metric) or {}
    value = block.get(res.get("main_metric"))
    return None if value is None else float(value) * scale


def tables(spec: Spec) -> list[Table]:
    metric, scale = spec.collect["metric"], float(spec.collect["scale"])
    axes = [a for a in spec.grid if a not in NOT_GROUPED]
    by_key: dict[tuple, Table] = {}
    for run in spec.runs:
        key = tuple((a, run.axes[a]) for a in axes)
        if key not in by_key:
            by_key[key] = Table(
                key, [], [], defaultdict(Cell), len(spec.grid.get("seed", [run.config["seed"]]))
            )
        t = by_key[key]
        task, target = run.config["task"], run.target
        t.tasks += [task] if task not in t.tasks else []
        t.targets += [target] if target not in t.targets else []
        value = score(run, metric, scale)
        cell = t.cells[(target, task)]
        if value is not None:
            cell.values[run.config["seed"]] = value
    for t in by_key.values():
        t.pvalues = _ttests(t)
    return list(by_key.values())


def _ttests(t: Table) -> dict:
    from scipy.stats import ttest_rel

    out = {}
    if "v" not in t.targets:
        return out
    for other in ("q", "k"):
        if other not in t.targets:
            continue
        for task in t.tasks:
            a, b = t.cells[("v", task)].values, t.cells[(other, task)].values
            seeds = sorted(set(a) & set(b))
            diffs = [a[s] - b[s] for s in seeds]
            if len(seeds) < 2 or all(d == diffs[0] for d in diffs):
                out[(other, task)] = None  # undefined: too few pairs or constant difference
            else:
                out[(other, task)] = float(
                    ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue
                )
    return out


# ---------------------------------------------------------------------------------- formats
def _fmt(cell: Cell, expected: int) -> str:
    if not cell.n:
        return MISSING
    text = f"{cell.mean:.1f} ± {cell.std:.1f}" if cell.n > 1 else f"{cell.mean:.1f}"
    return text + (f" (n={cell.n})" if cell.n < expected else "")


def _fmt_p(p) -> str:
    return MISSING if p is None else (f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}")


def _label(target: str) -> str:
    return f"b_{target}" if len(target) <= 2 and target.isalpha() else target


def markdown(tabs: list[Table], spec: Spec) -> str:
    lines = [
        (
            f"# {spec.name}: {spec.collect['metric']} main metric x {spec.collect['scale']:g}, "
            "mean ± std over seeds (bold: best target per column; p: paired t-test over seeds)"
        ),
        "",
    ]
    for t in tabs:
        lines += [
            f"## {t.title}",
            "",
            "| target | " + " | ".join(t.tasks) + " |",
            "|---|" + "---|" * len(t.tasks),
        ]
        for target in t.targets:
            row = []
            for task in t.tasks:
                text = _fmt(t.cells[(target, task)], t.expected_seeds)
                row.append(f"**{text}**" if target in t.best(task) else text)
            lines.append(f"| {_label(target)} | " + " | ".join(row) + " |")
        for other in ("q", "k"):
            if any(o == other for o, _ in t.pvalues):
                lines.append(
                    f"| p (v vs {other}) | "
                    + " | ".join(_fmt_p(t.pvalues[(other, task)]) for task in t.tasks)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


def to_csv(tabs: list[Table]) -> str:
    buf = io.StringIO()
    axes = [a for a, _ in tabs[0].key] if tabs else []
    w = csv.writer(buf)
    w.writerow(axes + ["target", "task", "mean", "std", "n", "best", "p_v_vs_target", "seeds"])
    for t in tabs:
        vals = [v for _, v in t.key]
        for target in t.targets:
            for task in t.tasks:
                c = t.cells[(target, task)]
                p = t.pvalues.get((target, task))
                w.writerow(
                    vals
                    + [
                        target,
                        task,
                        "" if c.mean is None else repr(c.mean),  # full precision
                        "" if c.std is None else repr(c.std),
                        c.n,
                        int(target in t.best(task)),
                        "" if p is None else repr(p),
                        " ".join(map(str, sorted(c.values))),
                    ]
                )
    return buf.getvalue()


def latex(tabs: list[Table], spec: Spec) -> str:
    def esc(s: str) -> str:
        return str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

    out = [
        f"% {spec.name}: mean $\\pm$ std over seeds; bold = best target; p = paired t-test; --- ="
        " missing"
    ]
    for t in tabs:
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\begin{tabular}{l" + "c" * len(t.tasks) + "}",
            r"\toprule",
            "Target & " + " & ".join(esc(x) for x in t.tasks) + r" \\",
            r"\midrule",
        ]
        for target in t.targets:
            row = []
            for task in t.tasks:
                c = t.cells[(target, task)]
                text = (
                    "---"
                    if not c.n
                    else (f"{c.mean:.1f}$\\pm${c.std:.1f}" if c.n > 1 else f"{c.mean:.1f}")
                )
                row.append(f"\\textbf{{{text}}}" if c.n and target in t.best(task) else text)
            lab = f"$b_{target}$" if len(target) == 1 else esc(target)
            out.append(lab + " & " + " & ".join(row) + r" \\")
        for other in ("q", "k"):
            if any(o == other for o, _ in t.pvalues):
                ps = [_fmt_p(t.pvalues[(other, task)]).replace(MISSING, "---") for task in t.tasks]
                out.append(f"$p$ (v vs {other}) & " + " & ".join(ps) + r" \\")
        out += [
            r"\bottomrule",
            r"\end{tabular}",
            f"\\caption{{{esc(spec.name)}: {esc(t.title)}}}",
            r"\end{table}",
            "",
        ]
    return "\n".join(out)


def figures(tabs: list[Table], out_dir: Path, name: str) -> list[Path]:
    """One PNG per table key without the regime: a panel per task, score vs regime per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fam: dict[tuple, dict] = defaultdict(dict)
    for t in tabs:
        rest = tuple(kv for kv in t.key if kv[0] != "regime")
        regime = dict(t.key).get("regime", "-")
        fam[rest][regime] = t
    paths = []
    for rest, by_regime in fam.items():
        regimes = list(by_regime)
        tasks = list(dict.fromkeys(task for t in by_regime.values() for task in t.tasks))
        targets = list(dict.fromkeys(x for t in by_regime.values() for x in t.targets))
        fig, axs = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
        for ax, task in zip(axs[0], tasks):
            for target in targets:
                xs, ys, es = [], [], []
                for i, reg in enumerate(regimes):
                    c = by_regime[reg].cells.get((target, task))
                    if c is not None and c.n:  # missing points are left out, never drawn as 0
                        xs.append(i), ys.append(c.mean), es.append(c.std)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=_label(target))
            ax.set_xticks(range(len(regimes)), regimes)
            ax.set_title(task)
            ax.set_xlabel("regime")
        axs[0][0].set_ylabel("score")
        axs[0][-1].legend(fontsize=8)
        fig.suptitle(", ".join(f"{k}={v}" for k, v in rest) or name, fontsize=9)
        fig.tight_layout()
        slug = "_".join(str(v).rstrip("/").rsplit("/", 1)[-1] for _, v in rest) or "all"
        path = out_dir / f"{name}_{slug}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


class NothingFinished(ValueError):
    pass


def scored(tabs: list[Table]) -> int:
    """How many of the spec's runs have a score in the tables (finished, with the metric)."""
    return sum(c.n for t in tabs for c in t.cells.values())


def collect(spec: Spec, out_dir: str | Path | None = None, figs: bool = True) -> dict[str, Path]:
    """Write the tables (and figures); refuse, writing nothing, when no run has a score at all."""
    from beft.outputs import atomic_write_text

    out = Path(out_dir) if out_dir else spec.root / "tables"
    tabs = tables(spec)
    if not scored(tabs):
        raise NothingFinished(
            f"no run of sweep {spec.name} has finished with a {spec.collect['metric']} score "
            f"(0 of {len(spec.runs)} under {spec.root}): nothing to collect; see "
            "`sweep.py status` for their states"
        )
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "md": out / f"{spec.name}.md",
        "csv": out / f"{spec.name}.csv",
        "tex": out / f"{spec.name}.tex",
    }
    atomic_write_text(files["md"], markdown(tabs, spec))
    atomic_write_text(files["csv"], to_csv(tabs))
    atomic_write_text(files["tex"], latex(tabs, spec))
    if figs:
        for i, p in enumerate(figures(tabs, out, spec.name)):
            files[f"png{i}"] = p
    return files
