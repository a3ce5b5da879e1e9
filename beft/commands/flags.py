"""The launcher flags every command reads the same way, and their contradictions.

    --recipe FILE        a training config (YAML; a run's config.yaml repeats that run)
    --config FILE        DeepSpeed JSON config (backend=deepspeed); alias --deepspeed, --deepspeed_config
    --fsdp               FSDP2 (backend=fsdp)
    --load_in_8bit       8-bit base weights (quant=8bit); --load_in_4bit: 4-bit (quant=4bit)

Everything else is key=value. A flag fixes its config keys: a second flag or a key=value that says
otherwise is a one-line error naming both (exit 2), never a silent choice of one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cli import UsageError

FILE_FLAGS = ("--config", "--deepspeed", "--deepspeed_config", "--recipe")
SWITCHES = {
    "--fsdp": {"backend": "fsdp", "deepspeed_config": None},
    "--load_in_8bit": {"quant": "8bit"},
    "--load_in_4bit": {"quant": "4bit"},
}
HELP = (
    "flags: --recipe FILE --config DS.json --fsdp --load_in_8bit --load_in_4bit; everything else is"
    " key=value"
)


@dataclass
class Args:
    recipe: str | None = None
    fixed: dict = field(default_factory=dict)  # config keys set by flags (win over the recipe)
    overrides: list[str] = field(default_factory=list)
    flags: dict = field(default_factory=dict)  # config key -> the flag that set it

    def set(self, flag: str, values: dict) -> None:
        for k, v in values.items():
            if k in self.fixed and self.fixed[k] != v:
                raise UsageError(
                    f"{self.flags[k]} and {flag} contradict each other ({k}); give one of them"
                )
            self.fixed[k] = v
            self.flags.setdefault(k, flag)


def parse_flags(argv: list[str], extra: tuple[str, ...] = ()) -> Args:
    """Split argv into --recipe, the launcher flags (as config keys) and key=value overrides.
    `extra`: flags this command handles itself (kept in overrides). --local_rank (DeepSpeed's
    launcher) is dropped."""
    out = Args()
    it = iter(argv)
    for a in it:
        if a.startswith(("--local_rank", "--local-rank")):
            if "=" not in a:
                next(it, None)
            continue
        name, eq, inline = a.partition("=")
        if name in FILE_FLAGS:
            value = inline if eq else next(it, None)
            if not value:
                raise UsageError(f"{name} needs a file")
            if name == "--recipe":
                if out.recipe is not None and out.recipe != value:
                    raise UsageError(f"--recipe given twice ({out.recipe}, {value}); give one")
                out.recipe = value
            else:
                out.set(name, {"backend": "deepspeed", "deepspeed_config": value})
        elif a in SWITCHES:
            out.set(a, SWITCHES[a])
        elif a in extra:
            out.overrides.append(a)
        elif a.startswith("--"):
            raise UsageError(f"unknown flag {a}; {HELP}")
        else:
            out.overrides.append(a)
    for o in out.overrides:
        key, _, value = o.partition("=")
        if key in out.fixed and value != str(out.fixed[key]):
            raise UsageError(
                f"{o} contradicts {out.flags[key]} ({key}={out.fixed[key]}); give one of them"
            )
    return out
