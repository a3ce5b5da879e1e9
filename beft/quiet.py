"""log_level=info (default): third-party chatter hidden; log_level=debug: everything shown.

Hidden at info: transformers' warnings (its LOAD REPORT of newly initialised heads, which beft
expects and reports itself) and its weight-loading progress bars; DeepSpeed's INFO records and its
accelerator warnings ("Setting accelerator to CPU"). Logging filters sit on the libraries' named
loggers, so they hold whether the library is imported before or after (DeepSpeed re-levels its
logger at import but keeps its filters). Errors always show.
"""

from __future__ import annotations

import logging

DEEPSPEED = "DeepSpeed"


class _HideAtInfo(logging.Filter):
    """DeepSpeed: drop INFO records and the accelerator-detection warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and not record.pathname.endswith(
            "real_accelerator.py"
        )


_FILTER = _HideAtInfo()


def apply(level: str) -> None:
    """Set third-party verbosity for log_level (info | debug); idempotent, process-wide. Call it
    before transformers is imported where possible: importing it can import DeepSpeed."""
    ds = logging.getLogger(DEEPSPEED)
    if level == "debug":  # the libraries' own defaults
        ds.removeFilter(_FILTER)
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity_warning()
        tf_logging.enable_progress_bar()
        return
    ds.addFilter(_FILTER)
    from transformers.utils import logging as tf_logging

    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
