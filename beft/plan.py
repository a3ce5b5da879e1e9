"""Memory planner: per-GPU bytes for weights, gradients, optimizer states and activations of one
training step, for full fine-tuning, bias-only training (BitFit or chosen q/k/v/o targets) and
LoRA, under fp32 / bf16 / fp16 / 8-bit / 4-bit, ZeRO-0/1/2/3 (+ offload) or FSDP, on N GPUs.

Pure arithmetic over config numbers: no torch, no deepspeed, no bitsandbytes. Units are bytes;
reports print GB = 1e9 bytes. The activation coefficients are explained in README "Memory planner"
and were counted from autograd's saved tensors (torch 2.13, transformers 5.24), then checked
against measured peaks (tests/plan/).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

GB = 1e9

# Total memory as nvidia-smi reports it (MiB), minus what the CUDA context and allocator keep.
GPUS = {
    "t4": 15360,
    "a40": 46068,
    "a100-40": 40960,
    "a100-80": 81920,
    "h100-80": 81559,
    "h200": 143771,
}
GPU_RESERVE = 1.5 * GB  # CUDA context (~0.5 GB) + allocator fragmentation headroom


def _opt(layers: int, hidden: int, ffn: int) -> dict:
    return dict(
        model_type="opt",
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=32,
        ffn_dim=ffn,
        vocab_size=50272,
        max_position_embeddings=2048,
        dropout=0.1,
    )


def _bert(
    layers: int,
    hidden: int,
    heads: int,
    inter: int,
    model_type: str = "bert",
    vocab: int = 30522,
    positions: int = 512,
    type_vocab: int = 2,
) -> dict:
    return dict(
        model_type=model_type,
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=inter,
        vocab_size=vocab,
        max_position_embeddings=positions,
        type_vocab_size=type_vocab,
        hidden_dropout_prob=0.1,
    )


# The paper's models (config numbers from their config.json files) plus the two offline ones.
BUILTIN = {
    "llama2-7b": dict(
        model_type="llama",
        num_hidden_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "deepseek-coder-1.3b": dict(
        model_type="llama",
        num_hidden_layers=24,
        hidden_size=2048,
        num_attention_heads=16,
        num_key_value_heads=16,
        intermediate_size=5504,
        vocab_size=32256,
        tie_word_embeddings=False,
    ),
    "gpt-j-6b": dict(
        model_type="gptj", n_layer=28, n_embd=4096, n_head=16, n_inner=None, vocab_size=50400
    ),
    "opt-1.3b": _opt(24, 2048, 8192),
    "opt-6.7b": _opt(32, 4096, 16384),
    "bert-base": _bert(12, 768, 12, 3072),
    "bert-large": _bert(24, 1024, 16, 4096),
    "roberta-base": _bert(12, 768, 12, 3072, "roberta", vocab=50265, positions=514, type_vocab=1),
    "minilm": _bert(6, 384, 12, 1536),
    "smollm2": dict(
        model_type="llama",
        num_hidden_layers=30,
        hidden_size=576,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
        head_dim=64,
        tie_word_embeddings=True,
    ),
}
ALIASES = {
    "llama-2-7b": "llama2-7b",
    "gptj-6b": "gpt-j-6b",
    "gpt-j": "gpt-j-6b",
    "deepseek-coder": "deepseek-coder-1.3b",
    "bert-base-uncased": "bert-base",
    "bert-large-uncased": "bert-large",
    "smollm2-135m": "smollm2",
    "all-minilm-l6-v2": "minilm",
}


@dataclass(frozen=True)
class Arch:
    """What the planner needs to know about a transformer."""

    family: str  # llama | opt | gptj | bert
    encoder: bool
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool = False  # SwiGLU: gate, up, down
    rms_norm: bool = False  # RMSNorm (weight only) vs LayerNorm (weight + bias)
    attn_bias: str = ""  # projections with a native bias, e.g. "qkvo"
    mlp_bias: bool = False
    parallel: bool = False  # GPT-J: attention and MLP read one norm
    positions: int = 0  # learned position-embedding rows
    type_vocab: int = 0
    tied: bool = True
    lm_head_bias: bool = False
    dropout: bool = False  # dropout active in training
    pooler: bool = False  # BERT: a pretrained pooler (h x h); RoBERTa's head has its own dense
    num_labels: int = 2

    @property
    def qd(self) -> int:  # q / o width
        return self.heads * self.head_dim

    @property
    def kvd(self) -> int:  # k / v width (narrower under grouped-query attention)
        return self.kv_heads * self.head_dim

    def proj_shape(self, t: str) -> tuple[int, int]:
        """(in, out) of projection q/k/v/o."""
        return {
            "q": (self.hidden, self.qd),
            "k": (self.hidden, self.kvd),
            "v": (self.hidden, self.kvd),
            "o": (self.qd, self.hidden),
        }[t]


def arch_from_config(cfg, num_labels: int = 2) -> Arch:
    """An Arch from a transformers config (or any object with the same attributes)."""
    g = lambda k, d=None: (
        getattr(cfg, k, d) if getattr(cfg, k, None) is not None else d
    )  # noqa: E731
    mt = g("model_type")
    if mt in ("llama", "mistral", "qwen2"):
        h, a = g("hidden_size"), g("num_attention_heads")
        bias = "qkv" if mt == "qwen2" else ("qkvo" if g("attention_bias", False) else "")
        return Arch(
            "llama",
            False,
            g("num_hidden_layers"),
            h,
            a,
            g("num_key_value_heads", a),
            g("head_dim", h // a),
            g("intermediate_size"),
            g("vocab_size"),
            gated_mlp=True,
            rms_norm=True,
            attn_bias=bias,
            mlp_bias=g("mlp_bias", False),
            tied=g("tie_word_embeddings", False),
            dropout=g("attention_dropout", 0.0) > 0,
        )
    if mt == "opt":
        h, a = g("hidden_size"), g("num_attention_heads")
        return Arch(
            "opt",
            False,
            g("num_hidden_layers"),
            h,
            a,
            a,
            h // a,
            g("ffn_dim"),
            g("vocab_size"),
            attn_bias="qkvo",
            mlp_bias=True,
            positions=g("max_position_embeddings", 2048) + 2,
            tied=g("tie_word_embeddings", True),
            dropout=g("dropout", 0.1) > 0,
        )
    if mt == "gptj":
        h, a = g("n_embd"), g("n_head")
        return Arch(
            "gptj",
            False,
            g("n_layer"),
            h,
            a,
            a,
            h // a,
            g("n_inner", 4 * h),
            g("vocab_size"),
            mlp_bias=True,
            parallel=True,
            tied=False,
            lm_head_bias=True,
            dropout=g("resid_pdrop", 0.0) > 0,
        )
    if mt in ("bert", "roberta"):
        h, a = g("hidden_size"), g("num_attention_heads")
        return Arch(
            "bert",
            True,
            g("num_hidden_layers"),
            h,
            a,
            a,
            h // a,
            g("intermediate_size"),
            g("vocab_size"),
            attn_bias="qkvo",
            mlp_bias=True,
            positions=g("max_position_embeddings", 512),
            type_vocab=g("type_vocab_size", 2),
            dropout=g("hidden_dropout_prob", 0.1) > 0,
            pooler=mt == "bert",
            num_labels=g("num_labels", num_labels) if mt == "bert" else num_labels,
        )
    raise ValueError(f"the planner knows llama/mistral/qwen2, opt, gptj, bert, roberta; not {mt!r}")


def load_arch(model: str, read=None) -> Arch:
    """A built-in name, or a hub id / local folder / short name whose config `read` returns
    (default: beft.models.load_config, which reads config.json only)."""
    key = ALIASES.get(model.lower(), model.lower())
    if key in BUILTIN:
        return arch_from_config(SimpleNamespace(**BUILTIN[key]))
    if read is None:
        from .models import load_config as read
    return arch_from_config(read(model))


# ---------------------------------------------------------------------------------- parameters


def layer_params(a: Arch) -> dict[str, int]:
    """Parameters of one transformer layer, by kind."""
    proj = {t: a.proj_shape(t)[0] * a.proj_shape(t)[1] for t in "qkvo"}
    bias = {t: a.proj_shape(t)[1] if t in a.attn_bias else 0 for t in "qkvo"}
    n_mlp = 3 if a.gated_mlp else 2
    mlp_b = (a.intermediate * (n_mlp - 1) + a.hidden) if a.mlp_bias else 0
    norm = (1 if a.parallel else 2) * (a.hidden if a.rms_norm else 2 * a.hidden)
    return {
        "attn": sum(proj.values()),
        "attn_bias": sum(bias.values()),
        "mlp": n_mlp * a.hidden * a.intermediate,
        "mlp_bias": mlp_b,
        "norm": norm,
    }


def outer_params(a: Arch) -> dict[str, int]:
    """Embeddings, final norm and head."""
    h = a.hidden
    emb = (a.vocab + a.positions + a.type_vocab) * h + (
        2 * h if a.encoder else 0
    )  # + embedding LayerNorm
    if a.encoder:  # BERT: pretrained pooler + new classifier; RoBERTa: new dense + classifier
        pooler = h * h + h
        cls = h * a.num_labels + a.num_labels + (0 if a.pooler else pooler)
        return {"embed": emb, "final_norm": 0, "pooler": pooler if a.pooler else 0, "head": cls}
    final = h if a.rms_norm else 2 * h
    head = (0 if a.tied else a.vocab * h) + (a.vocab if a.lm_head_bias else 0)
    return {"embed": emb, "final_norm": final, "head": head}


def total_params(a: Arch) -> int:
    return a.layers * sum(layer_params(a).values()) + sum(outer_params(a).values())


@dataclass(frozen=True)
class Method:
    kind: str = "bias"  # full | bias | bitfit | lora
    targets: str = "v"  # bias or LoRA targets (subset of qkvo)
    rank: int = 8  # LoRA rank

    @classmethod
    def parse(cls, method: str, bias: str = "v", r: int = 8, targets: str = "qv") -> "Method":
        m = method.lower()
        if m in ("bitfit", "all") or (m == "bias" and bias == "all"):
            return cls("bitfit", "qkvo")
        if m == "bias":
            bad = set(bias) - set("qkvo")
            if bad or not bias:
                raise ValueError(f"bias target {bias!r}: use letters of qkvo or 'all'")
            return cls("bias", "".join(t for t in "qkvo" if t in bias))
        if m in ("lora", "peft_lora"):  # LoRA on the weights (training's method=peft_lora)
            if int(r) < 1:
                raise ValueError(f"r={r} must be >= 1 (the LoRA rank)")
            return cls("lora", "".join(t for t in "qkvo" if t in targets), int(r))
        if m == "full":
            return cls("full", "")
        raise ValueError(
            f"method={method!r} is not one of full, bias (bias=q|k|v|o|qv...|all), bitfit,"
            " peft_lora"
        )


def added_params(a: Arch, m: Method) -> int:
    """Parameters that training creates: zero biases where the model has none, LoRA matrices."""
    if m.kind == "lora":
        return a.layers * sum(m.rank * sum(a.proj_shape(t)) for t in m.targets)
    if m.kind in ("bias", "bitfit"):
        return a.layers * sum(a.proj_shape(t)[1] for t in m.targets if t not in a.attn_bias)
    return 0


def trainable_params(a: Arch, m: Method) -> int:
    """What the optimizer updates (an encoder's new classifier head always trains)."""
    outer = outer_params(a)
    head = outer["head"] if a.encoder else 0
    if m.kind == "full":
        return total_params(a)
    if m.kind == "lora":
        return a.layers * sum(m.rank * sum(a.proj_shape(t)) for t in m.targets) + head
    per_layer = sum(a.proj_shape(t)[1] for t in m.targets)
    if m.kind == "bitfit":  # q/k/v/o (added where missing) + every native bias (norms, MLP, head)
        lp = layer_params(a)
        per_layer += lp["mlp_bias"] + (0 if a.rms_norm else (1 if a.parallel else 2) * a.hidden)
        other = (0 if a.rms_norm or a.encoder else a.hidden) + (
            a.vocab if a.lm_head_bias else 0
        )  # final norm
        other += a.hidden if a.encoder else 0  # embedding LayerNorm bias
        other += a.hidden if a.pooler else 0  # BERT pooler bias
        return a.layers * per_layer + other + head
    return a.layers * per_layer + head


# --------------------------------------------------------------------------------- activations


def _attention(a: Arch, seq: int, kernel: str, keep: str) -> float:
    """Saved floats per token for attention. kernel: flash (keeps q, k, v, output, logsumexp) or
    math (keeps q, k, v, softmax probabilities; with dropout also the mask and dropped probs).
    keep: 'all' (gradients to q and k are needed) or 'v' (only to v: probs alone)."""
    if kernel == "flash":  # one fused backward kernel needs all of q, k, v, out, lse
        return a.qd + 2 * a.kvd + a.qd + a.heads
    probs = a.heads * seq * (3 if a.dropout else 1)
    if keep == "v":
        return a.heads * seq
    return a.qd + 2 * a.kvd + probs


def _layer(a: Arch, seq: int, kernel: str, weights_train: bool, keep: str) -> float:
    """Saved floats per token in one layer. keep: all | v | none (which attention inputs need a
    gradient: 'none' when the layer's lowest trained parameter sits at or above o)."""
    h, i = a.hidden, a.intermediate
    norms = (1 if a.parallel else 2) * (h + (1 if a.rms_norm else 2))  # norm inputs + rstd (mean)
    attn = _attention(a, seq, kernel, keep) if keep != "none" else 0
    mlp = 3 * i if a.gated_mlp else i  # activation inputs (+ gate, up)
    drop = 2 * h if a.dropout else 0  # residual dropout masks
    extra = 0.0
    if weights_train:  # weight gradients need every Linear's input (+ RMSNorm's normalised input)
        extra = (2 * h if not a.parallel else h) + a.qd + i + (h if a.rms_norm else 0)
    return norms + attn + mlp + drop + extra


def _forward_ws(a: Arch, seq: int, kernel: str, dropout: bool) -> float:
    """Floats per token live at the peak of one layer's forward with nothing saved for backward
    (a no_grad forward): the layer input and the larger of its attention and MLP temporaries.
    Counted on MiniLM: the MLP phase holds the input, the attention output, GELU's input and
    output (3h + 2i); SwiGLU holds the residual, the normed input, act(gate), up and their product
    (2h + 3i); attention holds q, k, v and the output (flash) or the scores and probabilities
    (math; + the dropout mask in training)."""
    h, i = a.hidden, a.intermediate
    mlp = 2 * h + 3 * i if a.gated_mlp else 3 * h + 2 * i
    scores = a.qd + a.heads if kernel == "flash" else a.heads * seq * (3 if dropout else 2)
    return max(mlp, 2 * h + a.qd + 2 * a.kvd + scores)


def _top(a: Arch, tokens: int, act_bytes: int) -> tuple[float, float]:
    """Decoders: (saved, transient) bytes of the causal-LM loss. The loss upcasts logits to fp32
    and log_softmax keeps its fp32 output (B*T*V). The start of backward holds the gradients of
    the log-probs and of the logits (fp32, + a 16-bit copy); a no_grad forward holds the logits
    (fp32 upcast, + the 16-bit original) and the log-probs at once: the same bytes."""
    if a.encoder:
        return 0.0, 0.0
    btv = float(tokens) * a.vocab
    return 4.0 * btv, 2 * 4.0 * btv + (2.0 * btv if act_bytes == 2 else 0.0)


def activation_bytes(
    a: Arch,
    m: Method,
    batch: int,
    seq: int,
    act_bytes: int,
    kernel: str,
    mode: str = "backprop",
    zo_head: str = "freeze",
    kv_cache: bool = True,
) -> dict[str, float]:
    """Saved activations and the extra transient of one step, in bytes. mode: backprop (every
    activation a gradient needs is kept), ckpt (activation checkpointing: each layer keeps only
    its input; backward recomputes one layer at a time) or zo (no_grad forwards only)."""
    tokens = batch * seq
    h = a.hidden
    top_saved, top = _top(a, tokens, act_bytes)
    if mode == "zo":
        # eval-mode forwards (no dropout); nothing is saved for backward; transformers builds a KV
        # cache in every decoder forward unless use_cache=False (beft's scoring passes it, so
        # kv_cache defaults to False); + the final norm's input
        cache = a.layers * 2 * a.kvd if kv_cache else 0
        kept = 0.0 if a.encoder else (cache + h) * tokens * act_bytes
        ws = _forward_ws(a, seq, kernel, False)
        if a.encoder and zo_head == "first_order":  # + a train-mode forward (dropout) for the head
            ws = max(ws, _forward_ws(a, seq, kernel, a.dropout))
        return {"saved": kept, "transient": max(top, ws * tokens * act_bytes)}
    weights = m.kind == "full"
    first = "qk" if m.kind in ("full", "bitfit") else m.targets  # lowest trained layer's targets
    keep_low = "all" if set(first) & set("qk") else ("v" if "v" in first else "none")
    per = _layer(a, seq, kernel, weights, "all")
    low = _layer(a, seq, kernel, weights, keep_low)
    if m.kind == "lora":  # lora_A keeps its input (shared by projections reading x) and A x
        extra = (a.hidden if set(m.targets) & set("qkv") else 0) + (a.qd if "o" in m.targets else 0)
        extra += m.rank * len(m.targets)
        per, low = per + extra, low + extra
    # one layer's backward working set: gradients of its attention (scores and probs under the
    # math kernel; q, k, v under flash), of its MLP intermediates, and of a few hidden-size tensors
    attn_ws = (3 * a.heads * seq if kernel == "math" else 0) + a.qd + 2 * a.kvd
    mlp_ws = (3 if a.gated_mlp else 2) * a.intermediate + 2 * h
    if mode == "ckpt":
        # each checkpointed layer keeps its input; transformers' checkpointing also makes the
        # embedding output require grad, so an encoder's embedding LayerNorm keeps its input
        floats = a.layers * h + ((3 * h + 2) if weights else (2 * h + 2) if a.encoder else 0)
        if not a.encoder:
            floats += h + (1 if a.rms_norm else 2) + (2 * h if weights else 0)
        # backward recomputes one layer (everything it saves, gradients reaching the embeddings)
        # and starts its MLP backward while all of that is alive (measured peak on MiniLM)
        layer = (per + mlp_ws) * tokens * act_bytes
        return {"saved": floats * tokens * act_bytes + top_saved, "transient": max(top, layer)}
    if mode != "backprop":
        raise ValueError(f"mode {mode!r}: backprop, ckpt or zo")
    floats = low + (a.layers - 1) * per
    if a.encoder:
        # embedding LayerNorm input + stats + dropout mask, when anything below layer 0 trains
        floats += (3 * h + 2) if weights else ((2 * h + 2) if m.kind == "bitfit" else 0)
    else:
        floats += (
            h + (1 if a.rms_norm else 2) + (2 * h if weights else 0)
        )  # final norm (+ lm_head input)
        # (a loop that keeps the model output alive during backward also holds the logits: +4 B*T*V)
    ws = (attn_ws + mlp_ws) * tokens * act_bytes
    return {"saved": floats * tokens * act_bytes + top_saved, "transient": max(top, ws)}


# ------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Setup:
    dtype: str = "bf16"  # fp32 | bf16 | fp16 | int8 | int4 (8/4-bit base, bf16 compute)
    zero: int = 0  # 0 (DDP / one GPU), 1, 2, 3
    fsdp: bool = False  # FSDP full shard: like ZeRO-3
    offload: str = "none"  # none | optimizer | param | all (ZeRO-Offload)
    gpus: int = 1
    batch: int = 1  # per-GPU micro batch
    seq: int = 512
    kernel: str = (
        "flash"  # attention kernel: flash (GPU sdpa) or math (eager; CPU sdpa with dropout)
    )
    optim: str = "adamw"  # adamw (backpropagation) | zo (forward passes only: beft/zo/estimator.py)
    zo_update: str = "sgd"  # zo: sgd | adam (moments over the trained biases)
    zo_head: str = (
        "first_order"  # zo with a new encoder head: first_order (backprop into the head) | freeze
    )
    ckpt: bool = False  # activation checkpointing (first-order only)
    # zo: decoder forwards build transformers' KV cache (beft's scoring passes use_cache=False)
    kv_cache: bool = False


def _setup_check(s: Setup) -> None:
    for key in ("gpus", "batch", "seq"):
        if getattr(s, key) < 1:
            raise ValueError(f"{key}={getattr(s, key)} must be >= 1")
    if s.zero not in (0, 1, 2, 3):
        raise ValueError(f"zero={s.zero} must be 0, 1, 2 or 3")
    if s.zero and s.fsdp:
        raise ValueError(
            f"zero={s.zero} with fsdp=true: DeepSpeed ZeRO and FSDP are two sharding backends; "
            "use one (fsdp=true shards like zero=3)"
        )


def _zo_check(a: Arch, m: Method, s: Setup) -> None:
    if s.optim not in ("adamw", "zo"):
        raise ValueError(f"optim {s.optim!r}: adamw or zo")
    if s.optim != "zo":
        return
    if m.kind not in ("bias", "bitfit"):
        raise ValueError("optim=zo trains bias targets: method=bias or bitfit")
    if s.zo_update not in ("sgd", "adam") or s.zo_head not in ("first_order", "freeze"):
        raise ValueError("zo_update: sgd | adam; zo_head: first_order | freeze")


def plan(a: Arch, m: Method, s: Setup) -> dict:
    """Per-GPU bytes: weights, gradients, optimizer, activations, transient, peak."""
    if s.dtype not in ("fp32", "bf16", "fp16", "int8", "int4"):
        raise ValueError(f"dtype {s.dtype!r}: use fp32, bf16, fp16, int8 (8bit) or int4 (4bit)")
    _setup_check(s)
    _zo_check(a, m, s)
    zo = s.optim == "zo"
    quant = s.dtype in ("int8", "int4")
    if quant and m.kind == "full":
        raise ValueError(
            "full fine-tuning of an 8-bit/4-bit base is not supported; use bias or lora"
        )
    if quant and (s.zero == 3 or s.fsdp):
        raise ValueError(
            "an 8-bit/4-bit base cannot be sharded with ZeRO-3/FSDP here; use zero=0 or 2"
        )
    shard3 = s.zero == 3 or s.fsdp
    n_total, n_train = total_params(a), trainable_params(a, m)
    w16 = 4 if s.dtype == "fp32" else 2
    lp = layer_params(a)
    added = added_params(a, m)  # new tensors: added zero biases, LoRA A/B
    frozen = n_total + added - n_train  # base parameters that do not train
    if (
        quant
    ):  # frozen Linear weights quantized (+ fp32 scales), the rest bf16; trainable tensors fp32
        qbytes = 1.0 if s.dtype == "int8" else 0.5 + 4 / 64
        linear = a.layers * (lp["attn"] + lp["mlp"])
        weights = linear * qbytes + (frozen - linear) * 2 + n_train * 4
        grad_b, opt_b = 4, 8
    else:
        weights = (frozen + n_train) * w16
        grad_b = w16
        opt_b = 8 if s.dtype == "fp32" else 12  # Adam m, v (+ fp32 master copy in mixed precision)
    grads = n_train * grad_b
    opt = n_train * opt_b
    if zo:
        # only a first-order encoder head has gradients and AdamW states; the biases have the
        # step's fp32 buffers (values before the step, z, the estimate) + ZO-Adam's m and v
        head = outer_params(a)["head"] if a.encoder and s.zo_head == "first_order" else 0
        biases = n_train - (outer_params(a)["head"] if a.encoder else 0)
        # the head trains on full fp32 copies (copy, gradient, AdamW m and v), the same on every
        # rank
        grads, opt = head * 4, head * 12 + biases * (12 + (8 if s.zo_update == "adam" else 0))
    gather = 0.0
    if shard3:
        weights /= s.gpus
        gather = (
            2 * max(sum(lp.values()), a.vocab * a.hidden) * w16 if s.gpus > 1 else 0.0
        )  # 2 units in flight
    if (s.zero >= 2 or shard3) and not zo:
        grads /= s.gpus
    if (s.zero >= 1 or shard3) and not zo:  # ZO updates the gathered full biases
        opt /= s.gpus
    if s.offload in ("optimizer", "all"):
        opt = 0.0
    if s.offload in ("param", "all"):
        if not shard3:
            raise ValueError("offload=param needs zero=3 (or fsdp)")
        weights = 0.0
    elif s.offload not in ("none", "optimizer"):
        raise ValueError(f"offload={s.offload!r} is not one of none, optimizer, param, all")
    act_bytes = 4 if s.dtype == "fp32" else 2
    mode = "zo" if zo else ("ckpt" if s.ckpt else "backprop")
    act = activation_bytes(a, m, s.batch, s.seq, act_bytes, s.kernel, mode, s.zo_head, s.kv_cache)
    # grads land while activations are freed; the output layer's gradient comes first
    top = "head" if (a.encoder or not a.tied) else "embed"  # tied: the embedding is the LM head
    top_grad = outer_params(a)[top] * grad_b if m.kind == "full" else 0.0
    if m.kind == "full" and (s.zero >= 2 or shard3):
        top_grad /= s.gpus
    train_peak = weights + gather + opt + max(act["saved"] + act["transient"] + top_grad, grads)
    load = weights + _in_flight(a, s, w16)
    return {
        "params": n_total,
        "trainable": n_train,
        "weights": weights + gather,
        "grads": grads,
        "optimizer": opt,
        "activations": act["saved"],
        "transient": act["transient"] + top_grad,
        "load": load,
        "train_peak": train_peak,
        "peak": max(train_peak, load),
    }


def _in_flight(a: Arch, s: Setup, w16: int) -> float:
    """Bytes beyond the loaded weights while loading (beft's loaders, tensor by tensor): ZeRO-3
    gathers one whole tensor and rank 0 holds its copy read from the checkpoint; FSDP2 reads only a
    rank's rows of it; one process (8-bit: quantising) holds one tensor read in 16 or 32 bits."""
    largest = max(a.vocab * a.hidden, a.hidden * a.intermediate, a.qd * a.hidden)
    if s.offload in ("param", "all"):
        return largest * w16
    if s.fsdp and s.gpus > 1:
        return largest * w16 / s.gpus
    if s.zero == 3 and s.gpus > 1:
        return 2 * largest * w16
    return largest * (2 if s.dtype in ("int8", "int4") else w16)


def fits(peak: float, gpu: str) -> tuple[bool, float]:
    """(fits, usable GB) on a named GPU."""
    key = gpu.lower()
    if key not in GPUS:
        raise ValueError(f"unknown gpu {gpu!r}; known: {', '.join(GPUS)}")
    usable = GPUS[key] * 2**20 - GPU_RESERVE
    return peak <= usable, usable / GB


def format_plan(name: str, m: Method, s: Setup, p: dict, gpu: str | None = None) -> str:
    what = {
        "full": "full fine-tuning",
        "bitfit": "all biases (BitFit)",
        "bias": f"bias b_{m.targets}",
        "lora": f"LoRA r={m.rank} on {m.targets}",
    }[m.kind]
    shard = "FSDP" if s.fsdp else f"ZeRO-{s.zero}"
    if s.optim == "zo":
        what += f", ZO ({s.zo_update}; head {s.zo_head})"
    elif s.ckpt:
        what += ", activation checkpointing"
    lines = [
        f"{name}: {what}, {s.dtype}, {shard}"
        + (f" offload={s.offload}" if s.offload != "none" else "")
        + f", {s.gpus} GPU(s), batch {s.batch} x seq {s.seq} per GPU, attention {s.kernel}",
        (
            f"  parameters {p['params']:,}  trainable {p['trainable']:,}"
            f" ({100 * p['trainable'] / p['params']:.4f}%)"
        ),
        "  per GPU (GB = 1e9 bytes):",
    ]
    for k in ("weights", "grads", "optimizer", "activations", "transient"):
        lines.append(f"    {k:<12}{p[k] / GB:9.2f}")
    lines.append(f"    {'loading':<12}{p['load'] / GB:9.2f}  (weights + the tensor in flight)")
    lines.append(f"    {'peak':<12}{p['peak'] / GB:9.2f}")
    if gpu:
        ok, usable = fits(p["peak"], gpu)
        lines.append(
            f"  {gpu}: {'fits' if ok else 'does NOT fit'} ({p['peak'] / GB:.1f} of {usable:.1f} GB"
            " usable)"
        )
    return "\n".join(lines)
