"""Rank bias types by the Magnitude, Fisher and projection measures (beft/rank.py).

    beft rank [--recipe FILE] model=minilm task=sst2 regime=low output_dir=runs/rank_low
        an all-bias fine-tune (method=bitfit) through the normal loop into output_dir, then the
        ranking
    beft rank from_run=DIR [output_dir=OUT] [rank.measure=fisher] [rank.fisher_examples=N]
        rank a finished all-bias run (its config.yaml says model, task, data)
    beft rank --figure OUT.png DIR [DIR ...]
        Figure 4: q/k/v importance across several ranking runs (e.g. regimes low, medium, high)

Writes ranking.json (all measures, per type and layer, and the selected target), ranking.txt and
ranking.png. Train on the choice with `bias=auto rank_from=DIR` with `beft train`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..cli import UsageError


def main(argv: list[str]) -> int:
    from .. import rank
    from ..config import load_config

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and argv[0] == "--figure":
        if len(argv) < 3:
            raise UsageError("--figure OUT.png DIR [DIR ...]")
        results = [json.loads((Path(d) / rank.RANKING_FILE).read_text()) for d in argv[2:]]
        print(rank.plot_importance(results, argv[1]))
        return 0
    recipe, overrides = None, []
    it = iter(argv)
    for a in it:
        if a == "--recipe":
            recipe = next(it, None)
            if recipe is None:
                raise UsageError("--recipe needs a file")
        elif a.startswith("--"):
            raise UsageError(
                f"unknown flag {a}; flags: --recipe FILE, --figure OUT DIR...; else key=value"
            )
        else:
            overrides.append(a)
    from_run = next((a.split("=", 1)[1] for a in overrides if a.startswith("from_run=")), None)
    overrides = [a for a in overrides if not a.startswith("from_run=")]
    if from_run:
        run_dir = Path(from_run)
        if not (run_dir / "config.yaml").is_file() or not (run_dir / "adapter").is_dir():
            raise UsageError(
                f"from_run={from_run} is not a finished run (needs config.yaml and adapter/)"
            )
        out = next((a.split("=", 1)[1] for a in overrides if a.startswith("output_dir=")), None)
        cfg = load_config(run_dir / "config.yaml", overrides)
        if cfg.method != "bitfit" and cfg.bias != "all":
            raise UsageError(
                f"from_run={from_run} trained bias={cfg.bias} (method={cfg.method}); ranking"
                " compares every bias type, so it needs an all-bias fine-tune: a method=bitfit run"
                " (`beft rank` without from_run makes one)"
            )
        rank.rank_run(run_dir, out or run_dir, cfg)
        return 0
    from ..train import Trainer

    if any(a.startswith("method=") and a != "method=bitfit" for a in overrides):
        raise UsageError("a ranking run fine-tunes every bias (method=bitfit); leave method unset")
    cfg = load_config(recipe, overrides + ["method=bitfit"])
    Trainer(cfg).run()
    rank.rank_run(cfg.output_dir, cfg.output_dir, cfg)
    return 0
