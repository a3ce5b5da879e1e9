"""What the `dist` marker means, for conftest's check: a command line that starts several ranks."""

import os

MULTI_RANK = ("torchrun", "deepspeed", "accelerate")


def starts_ranks(args) -> bool:
    """Whether a command line is a multi-rank launcher (torchrun, deepspeed, accelerate launch,
    python -m torch.distributed.run)."""
    words = [str(w) for w in args] if isinstance(args, (list, tuple)) else str(args).split()
    return bool(words) and (
        os.path.basename(words[0]) in MULTI_RANK or "torch.distributed.run" in words
    )
