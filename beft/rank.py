"""Which bias type matters: the Magnitude, Fisher and projection measures (BEFT paper section 2,
appendix A), computed from an all-bias fine-tune (b_0 -> b_ft).

The measures are pure functions over state dicts (name -> tensor); the rest of this module
loads a finished run, computes the Fisher, and writes ranking.json / ranking.txt / ranking.png.

    python launch/rank.py model=minilm task=sst2 regime=low output_dir=runs/rank_low
    python launch/rank.py from_run=runs/some_bitfit_run

Bias types: q, k, v, o (the family's projections; a fused qkv bias is split into its slices),
and every other per-layer bias under its module path inside the layer (BERT:
"attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm").
Biases outside the numbered layers (embeddings, pooler, task head) are not ranked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .backends import dist
from .bias.families import Family

MEASURES = ("magnitude", "fisher", "projection")
QKV = ("q", "k", "v")
RANKING_FILE = "ranking.json"
_LAYER = re.compile(r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)\.(.+)\.bias$")


# ---------------------------------------------------------------------------------- measures
def magnitude(b0: torch.Tensor, bft: torch.Tensor) -> float:
    """BitFit's measure: mean |b_ft - b_0| over the entries."""
    return float((bft.double() - b0.double()).abs().mean())


def projection(b0: torch.Tensor, bft: torch.Tensor) -> float:
    """BEFT's measure: 1 - cos(theta) * min(|b_0|, |b_ft|) / max(|b_0|, |b_ft|), in [0, 2].

    0 = unchanged; it grows with a change of length or of direction. Degenerate rules (no
    exception): both norms 0 -> 0 (nothing changed); one norm 0 (a zero-initialised added bias,
    or a bias trained to 0) -> 1 (the ratio is 0, whatever the undefined angle). An angle beyond
    90 degrees is kept: cos < 0 gives a score above 1, a reversal counting as more change."""
    a, b = b0.double().flatten(), bft.double().flatten()
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 and nb == 0.0:
        return 0.0
    if na == 0.0 or nb == 0.0:
        return 1.0
    cos = max(-1.0, min(1.0, float(a @ b) / (na * nb)))
    return 1.0 - cos * min(na, nb) / max(na, nb)


def fisher(g2: torch.Tensor) -> float:
    """Mean over the entries of the diagonal empirical Fisher (mean squared gradient)."""
    return float(g2.double().mean())


# ------------------------------------------------------------------------ types and aggregation
def bias_views(
    state: dict[str, torch.Tensor], family: Family, config=None
) -> dict[tuple[str, int], torch.Tensor]:
    """(type, layer) -> the bias vector, for every per-layer bias in `state`."""
    out: dict[tuple[str, int], torch.Tensor] = {}
    for name, t in state.items():
        m = _LAYER.search(name)
        if not m:
            continue
        layer, module = int(m.group(1)), m.group(2)
        if family.regex:
            targets = [
                t_
                for t_, rx in family.projections.items()
                if re.fullmatch(rx, name[: -len(".bias")])
            ]
        else:
            targets = [t_ for t_, suffix in family.projections.items() if module == suffix]
        if not targets:
            out[(module, layer)] = t
        elif (
            len(targets) > 1 and family.fused_layout is not None
        ):  # fused qkv: one slice per target
            layout = family.fused_layout(config, t.numel())
            for tg in targets:
                out[(tg, layer)] = t[layout[tg]] if tg in layout else t
        else:
            out[(targets[0], layer)] = t
    return out


def scores(
    measure: str,
    b0: dict,
    bft: dict | None = None,
    g2: dict | None = None,
    family: Family | None = None,
    config=None,
) -> dict[tuple[str, int], float]:
    """(type, layer) -> the measure, from state dicts of b_0 and b_ft (or squared gradients)."""
    if measure == "fisher":
        return {k: fisher(v) for k, v in bias_views(g2, family, config).items()}
    v0, v1 = bias_views(b0, family, config), bias_views(bft, family, config)
    fn = magnitude if measure == "magnitude" else projection
    return {k: fn(v0[k], v1[k]) for k in v0 if k in v1}


def aggregate(per_layer: dict[tuple[str, int], float]) -> dict[str, dict]:
    """type -> {"layers": [score per layer, in layer order], "sum": ..., "mean": ...}."""
    by: dict[str, dict[int, float]] = {}
    for (typ, layer), s in per_layer.items():
        by.setdefault(typ, {})[layer] = s
    return {
        t: {
            "layers": [v[i] for i in sorted(v)],
            "sum": sum(v.values()),
            "mean": sum(v.values()) / len(v),
        }
        for t, v in by.items()
    }


def order(agg: dict[str, dict]) -> list[str]:
    """Types from most to least important (by the mean over layers; ties: name)."""
    return sorted(agg, key=lambda t: (-agg[t]["mean"], t))


def select(agg: dict[str, dict], among: tuple[str, ...] = QKV) -> str | None:
    top = [t for t in order(agg) if t in among]
    return top[0] if top else None


def rank_state(b0: dict, bft: dict, g2: dict | None, family: Family, config=None) -> dict:
    """All measures: {measure: {"per_type": aggregate, "order": [...], "top_qkv": "v"}}."""
    out = {}
    for m in MEASURES:
        if m == "fisher" and g2 is None:
            continue
        agg = aggregate(scores(m, b0, bft, g2, family, config))
        out[m] = {"per_type": agg, "order": order(agg), "top_qkv": select(agg)}
    return out


def format_table(measures: dict) -> str:
    types = sorted(
        {t for r in measures.values() for t in r["per_type"]},
        key=lambda t: (t not in ("q", "k", "v", "o"), t),
    )
    cols = list(measures)
    lines = [f"{'bias type':<28}" + "".join(f"{m + ' mean (rank)':>26}" for m in cols)]
    for t in types:
        row = f"{t:<28}"
        for m in cols:
            r = measures[m]
            row += (
                f"{r['per_type'][t]['mean']:>19.4e} ({r['order'].index(t) + 1:>2})"
                if t in r["per_type"]
                else f"{'-':>26}"
            )
        lines.append(row)
    lines.append("top of q/k/v: " + ", ".join(f"{m}={measures[m]['top_qkv']}" for m in cols))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ Fisher (model)
def empirical_fisher(
    model, task, tokenizer, examples: list[dict], params: dict[str, torch.Tensor], max_length: int
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher at the model's current point: the mean over examples of the
    squared gradient of each example's loss (per-sample, batch of one: not the square of a batch
    gradient). Dropout off (eval mode)."""
    was_training = model.training
    model.eval()
    names, tensors = list(params), list(params.values())
    acc = [torch.zeros_like(p, dtype=torch.float64, device="cpu") for p in tensors]
    dev = tensors[0].device
    for ex in examples:
        batch = {
            k: v.to(dev) if torch.is_tensor(v) else v
            for k, v in task.collate(tokenizer, [ex], max_length).items()
        }
        grads = torch.autograd.grad(task.loss(model, batch), tensors, allow_unused=True)
        for a, g in zip(acc, grads):
            if g is not None:
                a += g.detach().double().cpu() ** 2
    model.train(was_training)
    return {n: a / max(len(examples), 1) for n, a in zip(names, acc)}


# --------------------------------------------------------------------------------- a whole run
def rank_run(
    run_dir: str | Path, out_dir: str | Path | None = None, cfg=None, verbose: bool = True
) -> dict:
    """Rank the biases of a finished all-bias run (its adapter holds b_ft; b_0 comes from the base
    model). The encoder head is initialised as in the run (same seed) for the Fisher."""
    from .bias import apply_bias, detect_family
    from .bias.adapter import read_adapter
    from .config import load_config
    from .models import load_config as load_model_config
    from .models import load_model, resolve_arch
    from .tasks import task_for

    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir)
    if cfg is None:
        cfg = load_config(run_dir / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    arch = resolve_arch(cfg.arch, load_model_config(cfg.model))
    task = task_for(cfg.task, arch, cfg.data)
    splits = task.load(cfg.data_dir, cfg.regime, cfg.seed, cfg.data.n_train, cfg.data.n_eval)
    model, tokenizer, head = load_model(cfg.model, arch, num_labels=task.num_labels)
    model.to(dist.device())  # the Fisher measure runs a backward pass per example
    patterns = cfg.bias_patterns or None
    sel = apply_bias(model, "all", patterns=patterns, head=head)
    bft, meta = read_adapter(run_dir / "adapter")
    b0 = {n: t for n, t in sel.initial.items() if n in bft}
    if not b0:
        raise ValueError(
            f"{run_dir}/adapter holds none of this model's biases; rank an all-bias run "
            "(method=bitfit)"
        )
    params = {n: p for n, p in sel.bias_parameters().items() if n in b0}
    n_fisher = cfg.rank.fisher_examples or len(splits.train)
    g2 = empirical_fisher(
        model, task, tokenizer, splits.train[:n_fisher], params, cfg.data.max_length
    )
    family = detect_family(model, patterns)
    measures = rank_state(b0, bft, g2, family, model.config)
    result = {
        "run": str(run_dir),
        "model": cfg.model,
        "task": cfg.task,
        "regime": cfg.regime,
        "n_train": len(splits.train),
        "seed": cfg.seed,
        "family": family.name,
        "fisher": {"examples": min(n_fisher, len(splits.train)), "kind": "per-sample"},
        "measure": cfg.rank.measure,
        "selected": measures[cfg.rank.measure]["top_qkv"],
        "measures": measures,
        "adapter_targets": meta.get("targets"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    from .outputs import atomic_write_json, atomic_write_text

    table = format_table(measures)
    atomic_write_json(out_dir / RANKING_FILE, result)
    atomic_write_text(
        out_dir / "ranking.txt", table + f"\nselected ({cfg.rank.measure}): {result['selected']}\n"
    )
    plot_importance([result], out_dir / "ranking.png")
    if verbose:
        print(
            f"ranking of {run_dir} ({cfg.model}, {cfg.task}, regime {cfg.regime}, n_train"
            f" {len(splits.train)}):"
        )
        print(table)
        print(
            f"selected ({cfg.rank.measure}): {result['selected']} -> {out_dir / RANKING_FILE}, "
            f"{out_dir / 'ranking.png'}",
            flush=True,
        )
    return result


def auto_target(rank_from: str | Path) -> str:
    """bias=auto: the top-ranked of q/k/v in a ranking run's ranking.json."""
    path = Path(rank_from)
    path = path / RANKING_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(
            f"rank_from={rank_from}: no {RANKING_FILE} there; make one with "
            "python launch/rank.py ... output_dir=DIR"
        )
    selected = json.loads(path.read_text()).get("selected")
    if selected not in QKV:
        raise ValueError(f"{path} selects {selected!r}, not one of q, k, v")
    return selected


# ------------------------------------------------------------------------------------ figure
def plot_importance(results: list[dict], path: str | Path) -> Path:
    """The paper's Figure 4: q/k/v importance per measure across runs (data regimes). Each bar is
    the type's mean over layers divided by the q+k+v total of its run and measure, so measures of
    different scales share one axis (shares of 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [m for m in MEASURES if all(m in r["measures"] for r in results)]
    fig, axes = plt.subplots(1, len(measures), figsize=(4 * len(measures), 3.2), squeeze=False)
    labels = [f"{r['regime']} ({r['n_train']})" for r in results]
    width = 0.8 / len(QKV)
    for ax, m in zip(axes[0], measures):
        for j, t in enumerate(QKV):
            ys = []
            for r in results:
                agg = r["measures"][m]["per_type"]
                tot = sum(agg[x]["mean"] for x in QKV if x in agg) or 1.0
                ys.append(agg[t]["mean"] / tot if t in agg else 0.0)
            ax.bar([i + (j - 1) * width for i in range(len(results))], ys, width, label=t)
        ax.set_xticks(range(len(results)), labels)
        ax.set_title(m)
        ax.set_ylabel("share of q+k+v importance")
    axes[0][0].legend(title="bias")
    r0 = results[0]
    fig.suptitle(f"{r0['model']} / {r0['task']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
