"""beft sweep submit SPEC executor=slurm|local|debug [dry_run=true] [root=DIR]
           status SPEC [root=DIR]
           collect SPEC [out=DIR] [root=DIR] [figures=false]

key=value as in every beft command; the flag spellings (--executor slurm, --root DIR, --out DIR,
--dry-run, --no-figures) work too. python slurm/sweep.py ... is the same command."""

from __future__ import annotations

import argparse
import sys

from beft.cli import UsageError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweep.py", description="beft sweeps: submit, status, collect")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="submit unfinished runs (finished ones are skipped)")
    s.add_argument("spec")
    s.add_argument(
        "--executor",
        choices=("slurm", "local", "debug"),
        required=True,
        help="slurm: job arrays via sbatch; local: subprocesses here; debug: in this process",
    )
    s.add_argument(
        "--dry-run", action="store_true", help="print the runs and sbatch parameters only"
    )
    st = sub.add_parser("status", help="pending/running/done/failed counts, failed runs' logs")
    st.add_argument("spec")
    c = sub.add_parser("collect", help="tables (md, csv, tex) and figures from finished runs")
    c.add_argument("spec")
    c.add_argument("--out", help="output folder (default: <root>/tables)")
    c.add_argument("--no-figures", action="store_true")
    for q in (s, st, c):
        q.add_argument("--root", help="sweep root (default: the spec's root)")
    return p


# key=value option -> its flag: a value flag takes the value, a switch is on for true
VALUE_FLAGS = {"executor": "--executor", "root": "--root", "out": "--out", "spec": None}
SWITCHES = {"dry_run": ("--dry-run", True), "figures": ("--no-figures", False)}


def flags(argv: list[str]) -> list[str]:
    """key=value arguments as the parser's flags (spec=FILE: the positional spec)."""
    from beft.config import ConfigError, _coerce

    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        if not eq or a.startswith("-"):
            out.append(a)
        elif key in VALUE_FLAGS:
            out += [VALUE_FLAGS[key], value] if VALUE_FLAGS[key] else [value]
        elif key in SWITCHES:
            flag, when = SWITCHES[key]
            try:
                out += [flag] if _coerce(value, bool, key) == when else []
            except ConfigError as e:
                raise UsageError(str(e)) from None
        else:
            raise UsageError(
                f"unknown option {key!r}; options: {', '.join([*VALUE_FLAGS, *SWITCHES])} (or their"
                " --flag spellings)"
            )
    return out


def main(argv: list[str]) -> int:
    from beft.sweep.spec import load_spec

    args = parser().parse_args(argv[:1] + flags(argv[1:]))
    spec = load_spec(args.spec, root=args.root)
    if args.command == "submit":
        from beft.sweep.submit import submit

        if args.executor == "slurm" and not args.dry_run:
            from beft.sweep.submitit_exec import sinfo_ok

            if not sinfo_ok():
                raise UsageError(
                    "--executor slurm: sinfo does not answer (no SLURM controller reachable); "
                    "use --executor local"
                )
        res = submit(spec, args.executor, dry_run=args.dry_run)
        return 1 if res["failed"] else 0
    if args.command == "status":
        from beft.sweep.submit import status

        states = status(spec)
        return 1 if any(s.state == "failed" for s in states) else 0
    from beft.sweep.collect import collect, scored, tables

    for kind, path in collect(spec, args.out, figs=not args.no_figures).items():
        print(f"{kind}: {path}")
    done = scored(tables(spec))
    if done < len(spec.runs):
        print(
            f"collected {done} of {len(spec.runs)} runs; the {len(spec.runs) - done} without a"
            " score show as — (see `sweep.py status`)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    from beft.cli import run

    run(main, sys.argv[1:], own_process=True)
