"""Every model family transformers ships (causal LM and sequence classification), built from a
tiny config: detection finds its attention projections or refuses in one line, bias=v leaves the
forward bit-identical, and a fused layer's v slice is the one the forward adds to every value."""

import time
import warnings

import pytest
import torch
import transformers as tf
from transformers import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from beft.bias import UnsupportedModelError, apply_bias, detect_family
from beft.bias.detect import out_features
from beft.bias.families import find_projections
from tiny import random_biases

SMALL = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    num_hidden_layers=2,
    vocab_size=128,
    head_dim=16,
    max_position_embeddings=128,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    num_labels=2,
    rotary_dim=8,
    num_kv_heads=2,
    d_ff=128,
    d_kv=16,
    ffn_dim=128,
    encoder_ffn_dim=128,
    decoder_ffn_dim=128,
    ffn_hidden_size=128,
    n_inner=128,
    encoder_layers=2,
    decoder_layers=2,
    num_layers=2,
    num_decoder_layers=2,
)
IMPORTANT = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gpt2",
    "gptj",
    "gpt_neox",
    "opt",
    "phi3",
    "bert",
    "roberta",
    "mpnet",
    "gemma",
    "gemma2",
    "bloom",
    "falcon",
    "phi",
    "starcoder2",
    "olmo",
    "distilbert",
    "mpt",
    "gpt_bigcode",
    "t5",
    "bart",
]
TYPES = sorted(
    set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) | set(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)
)
MAX_PARAMS = (
    2_000_000  # the forward check runs on models this small (most; all are detected on meta)
)
SLOW = {"falcon_h1"}  # its Mamba layers' CPU path takes seconds: checked on meta only


def _shrink(cfg) -> None:
    for k, v in SMALL.items():
        if hasattr(cfg, k):
            try:
                setattr(cfg, k, v)
            except Exception:
                pass
    if (
        getattr(cfg, "is_encoder_decoder", False)
        and getattr(cfg, "decoder_start_token_id", None) is None
    ):
        cfg.decoder_start_token_id = SMALL["pad_token_id"]  # T5's default config has none
    for v in list(vars(cfg).values()):  # text_config, vision_config, ...
        if isinstance(v, tf.PretrainedConfig):
            _shrink(v)


def _build(model_type: str, device: str):
    cfg = CONFIG_MAPPING[model_type]()
    _shrink(cfg)
    cls = (
        tf.AutoModelForCausalLM
        if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        else tf.AutoModelForSequenceClassification
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = cls.from_config(cfg).eval()
    return model if device == "meta" else random_biases(model)


def _inputs():
    ids = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(1))
    ids[:, -1] = SMALL["eos_token_id"]  # T5's classifier reads the end-of-sequence token
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _logits(model, x):
    with torch.no_grad():
        out = model(**x)
    return out.logits if hasattr(out, "logits") else out[0]


def v_slice_is_the_value(model, fam, site, atol: float = 1e-4) -> bool:
    """Add distinct random numbers r to the v slice of a fused bias: attention weights sum to 1,
    so the input of the block's output projection moves by the same vector at every position,
    and that vector holds exactly the numbers of r (each value feature feeds its query heads).
    A q entry in the slice would move positions differently, a k entry would not show."""
    layer = site.name.rsplit(".", 2)[0]
    o = next(m for n, m in find_projections(model, fam, "o") if n.startswith(layer + "."))
    seen = []
    hook = o.register_forward_hook(lambda m, a, out: seen.append(a[0].detach().clone()))
    x = _inputs()
    _logits(model, x)
    v = fam.fused_layout(model.config, out_features(site.module))["v"]
    r = torch.rand(v.numel(), generator=torch.Generator().manual_seed(0)) + 1.0
    with torch.no_grad():
        site.module.bias[v] += r
    _logits(model, x)
    hook.remove()
    shift = (seen[1] - seen[0]).reshape(-1, seen[0].shape[-1])  # (positions, o in_features)
    uniform = torch.allclose(shift, shift[:1].expand_as(shift), atol=atol)
    gap = (shift[0].unsqueeze(1) - r.unsqueeze(0)).abs()  # (o in_features, v entries)
    return uniform and bool(gap.min(1).values.max() < atol) and bool(gap.min(0).values.max() < atol)


def _structure(model_type: str) -> tuple[str, str]:
    """Detection and bias=v injection on the meta device (no weights): any size builds."""
    try:
        model = _build(model_type, "meta")
    except Exception as e:  # transformers' own model does not build from a shrunk default config
        return "unbuildable", f"{type(e).__name__}: {str(e)[:80]}"
    try:
        fam = detect_family(model)
        sel = apply_bias(model, "v")
    except UnsupportedModelError as e:
        assert "\n" not in str(e)
        return "refused", str(e)
    except Exception as e:
        return "crashed", f"detect/inject: {type(e).__name__}: {e}"
    n = sum(p.numel() for p in model.parameters())
    return (
        "detected",
        f"{fam.name}: {len(sel.sites)} v biases ({sel.sites[0].name}); {n:,} parameters",
    )


def _forward(model_type: str) -> tuple[str, str]:
    """On real tiny weights: zero biases leave the logits bit-identical; a fused v slice is the
    value."""
    try:
        model = _build(model_type, "cpu").requires_grad_(False)  # Longformer's kernel depends on it
        x = _inputs()
        before = _logits(model, x)
    except Exception as e:
        return "unbuildable", f"forward: {type(e).__name__}: {str(e)[:80]}"
    try:
        fam = detect_family(model)
        sel = apply_bias(model, "v")
        model.requires_grad_(False)
        if not torch.equal(before, _logits(model, x)):
            return "crashed", "zero biases changed the forward"
        if fam.fused_layout is not None:
            if not v_slice_is_the_value(model, fam, sel.sites[0]):
                return "crashed", "the fused v slice is not the value"
    except Exception as e:
        return "crashed", f"forward: {type(e).__name__}: {e}"
    return "detected", ""


def survey() -> dict[str, tuple[str, str]]:
    """model_type -> ('detected' | 'refused' | 'unbuildable' | 'crashed', detail)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in TYPES:
            t0 = time.time()
            kind, detail = _structure(t)
            small = (
                kind == "detected"
                and int(detail.rsplit("; ", 1)[1].split()[0].replace(",", "")) <= MAX_PARAMS
            )
            if small and t not in SLOW:
                kind2, detail2 = _forward(t)
                if kind2 == "crashed":
                    kind, detail = kind2, detail2
                elif kind2 == "detected":
                    detail += "; forward bit-identical"
            out[t] = (kind, detail)
            TIMES[t] = time.time() - t0
    return out


TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def results():
    torch.set_num_threads(1)
    t0 = time.time()
    res = survey()
    counts = {
        k: sum(1 for v in res.values() if v[0] == k)
        for k in ("detected", "refused", "crashed", "unbuildable")
    }
    forward = sum("forward bit-identical" in d for _, d in res.values())
    print(
        f"\n{counts['detected']} detected, {counts['refused']} refused, {counts['crashed']} crashed"
        f" ({forward} of the detected also ran a bit-identical forward; {counts['unbuildable']} of"
        f" {len(res)} model types do not build from a tiny config; {time.time() - t0:.0f} s)"
    )
    return res


def test_every_family_detected_or_refused_never_crashed(results):
    crashed = {t: d for t, (k, d) in results.items() if k == "crashed"}
    assert not crashed, crashed


def test_important_families_are_detected(results):
    missing = {
        t: results.get(t)
        for t in IMPORTANT
        if results.get(t, ("absent", ""))[0] != "detected"
        or "forward bit-identical" not in results[t][1]
    }
    assert not missing, missing
