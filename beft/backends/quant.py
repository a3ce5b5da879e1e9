"""8-bit / 4-bit base weights through bitsandbytes (CPU and GPU)."""

from __future__ import annotations

import torch

from ..bias.selection import BiasSelection

HEAD_MODULES = (
    "classifier",
    "score",
    "qa_outputs",
    "lm_head",
)  # task / LM heads of transformers' models


def available() -> bool:
    try:
        import bitsandbytes  # noqa: F401

        return True
    except Exception:
        return False


def quantization_config(bits: int, compute_dtype: torch.dtype = torch.float32):
    """transformers' BitsAndBytesConfig for 8- or 4-bit (nf4) base weights."""
    if bits not in (8, 4):
        raise ValueError(f"quantization bits must be 8 or 4, got {bits}")
    if not available():
        raise ImportError("8-bit/4-bit loading needs bitsandbytes: pip install 'beft[quant]'")
    from transformers import BitsAndBytesConfig

    # output layers stay in full precision: a new task head is trained (a quantized, randomly
    # initialised classifier crashed in bitsandbytes), and the LM head scores
    skip = list(HEAD_MODULES)
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skip,
    )


def zero_added_biases(selection: BiasSelection) -> None:
    """A quantized load leaves biases the checkpoint lacks UNINITIALISED (4-bit: values up to
    1e38 or NaN). Added biases must start at exactly zero."""
    with torch.no_grad():
        for site in selection.sites:
            if site.added:
                site.module.bias.zero_()
        for name in list(selection.initial):
            if any(s.added and s.param_name == name for s in selection.sites):
                selection.initial[name] = torch.zeros_like(selection.initial[name])


def is_quantized(model) -> bool:
    return bool(
        getattr(model, "is_loaded_in_8bit", False)
        or getattr(model, "is_loaded_in_4bit", False)
        or getattr(model, "quantization_method", None)
    )
