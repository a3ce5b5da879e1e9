"""Candidate scoring, losses and generation on a tiny random LLaMA (GQA: 4 heads, 2 kv heads)."""

import pytest
import torch

from beft.tasks import get_task
from beft.tasks.generation import generate_answers
from beft.tasks.scoring import encode_pair, mean_loglik

SST = [
    {"text_a": "it was a great movie", "label": 1},
    {"text_a": "a terrible ending .", "label": 0},
    {"text_a": "the cat sat on the mat because it was tired , so it slept .", "label": 1},
]
COPA = [
    {
        "premise": "The cat sat on the mat.",
        "choice1": "It was tired.",
        "choice2": "It slept.",
        "question": "cause",
        "label": 0,
    }
]


def slow_score(model, tokenizer, prompt: str, cand: str, max_length: int) -> float:
    ids, n = encode_pair(tokenizer, prompt, cand, max_length)
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0].float(), -1)  # (L, V)
    per_token = logp[:-1].gather(1, x[0, 1:, None])[:, 0]  # log p(ids[t+1] | ids[:t+1])
    return per_token[-n:].mean().item()


@pytest.mark.parametrize("name,examples", [("sst2", SST), ("copa", COPA)])
def test_batched_scores_equal_slow_reference(tiny_llama, bpe_tokenizer, name, examples):
    task = get_task(name, arch="decoder")
    batch = task.collate(bpe_tokenizer, examples, max_length=64)
    with torch.no_grad():
        fast = mean_loglik(tiny_llama, batch)
    slow = [
        slow_score(tiny_llama, bpe_tokenizer, task.prompt.prompt(ex), c, 64)
        for ex in examples
        for c in task.prompt.candidates(ex)
    ]
    assert fast.tolist() == pytest.approx(slow, abs=1e-5)
    assert batch["attention_mask"].sum() < batch["attention_mask"].numel()  # padding present


def test_padding_does_not_change_scores(tiny_llama, bpe_tokenizer):
    task = get_task("sst2", arch="decoder")
    with torch.no_grad():
        alone = mean_loglik(tiny_llama, task.collate(bpe_tokenizer, SST[:1], 64))
        padded = mean_loglik(tiny_llama, task.collate(bpe_tokenizer, SST, 64))
    assert padded[:2].tolist() == pytest.approx(alone.tolist(), abs=1e-5)
    preds = task.predict(tiny_llama, task.collate(bpe_tokenizer, SST, 64))
    assert preds == task.predict(tiny_llama, task.collate(bpe_tokenizer, SST, 64))
    assert set(preds) <= {0, 1}


def test_truncation_keeps_candidate(bpe_tokenizer):
    ids, n = encode_pair(bpe_tokenizer, "the cat sat on the mat " * 20, " great", max_length=16)
    assert len(ids) == 16 and n >= 1
    assert bpe_tokenizer.decode(ids[-n:]) == " great"


def test_collate_is_deterministic_and_pads_with_eos(bpe_tokenizer):
    task = get_task("sst2", arch="decoder")
    a, b = task.collate(bpe_tokenizer, SST, 64), task.collate(bpe_tokenizer, SST, 64)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ids, mask = a["input_ids"], a["attention_mask"]
    assert (ids[mask == 0] == bpe_tokenizer.eos_token_id).all()
    assert a["pair_example"].tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("objective", ["ce", "lm"])
def test_loss_differentiable_and_decreases(tiny_llama, bpe_tokenizer, objective):
    task = get_task("sst2", arch="decoder", train_objective=objective)
    batch = task.collate(bpe_tokenizer, SST, 64)
    tiny_llama.train()
    opt = torch.optim.SGD(tiny_llama.parameters(), lr=0.1)
    losses = []
    for _ in range(6):
        loss = task.loss(tiny_llama, batch)
        assert loss.ndim == 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    if objective == "ce":  # ce is cross-entropy over the two candidates
        assert losses[0] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=0.2)


def test_bad_objective_rejected():
    with pytest.raises(ValueError, match="train_objective"):
        get_task("sst2", arch="decoder", train_objective="mse")


def biased_head(model, token_id: int) -> None:
    """Make every step predict `token_id`, whatever the input."""
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[token_id] = 10.0
    model.lm_head = head


SQUAD = [
    {
        "title": "Paris",
        "context": "Paris is the capital of France.",
        "question": "What is it?",
        "answers": ["Paris", "the capital"],
    },
    {"title": "Cat", "context": "The cat sat.", "question": "Who sat?", "answers": ["the cat"]},
]


def test_generation_stops_at_newline(tiny_llama, bpe_tokenizer):
    task = get_task("squad", arch="decoder")
    batch = task.collate(bpe_tokenizer, SQUAD, max_length=64)
    biased_head(tiny_llama, bpe_tokenizer.convert_tokens_to_ids("Ċ"))  # byte-level "\n"
    texts, steps = generate_answers(tiny_llama, bpe_tokenizer, batch, max_new_tokens=10)
    assert texts == ["", ""] and steps == 1
    biased_head(tiny_llama, bpe_tokenizer.convert_tokens_to_ids("a"))
    texts, steps = generate_answers(tiny_llama, bpe_tokenizer, batch, max_new_tokens=10)
    assert texts == ["a" * 10] * 2 and steps == 10
    assert task.predict(tiny_llama, batch, max_new_tokens=3) == ["aaa", "aaa"]
    assert task.metrics(["Paris", "cat"], SQUAD) == {"f1": 1.0, "em": 1.0}


def test_generation_task_lm_loss_on_answer(tiny_llama, bpe_tokenizer):
    task = get_task("squad", arch="decoder")
    batch = task.collate(bpe_tokenizer, SQUAD, max_length=64)
    first = batch["target_mask"][0].nonzero()[0].item()
    n = int(batch["target_mask"][0].sum())
    assert bpe_tokenizer.decode(batch["input_ids"][0, first : first + n]) == " Paris\n"
    assert (batch["gen_attention_mask"][:, -1] == 1).all()  # left padded for generate
    loss = task.loss(tiny_llama, batch)
    loss.backward()
    assert torch.isfinite(loss) and tiny_llama.model.embed_tokens.weight.grad is not None


class NoKwargsWrapper(torch.nn.Module):
    """Hides the forward signature (as DeepSpeed's engine does): no logits_to_keep, no use_cache."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


@pytest.mark.parametrize("objective", ["ce", "lm"])
def test_shared_prompt_fast_path_equals_one_row_per_pair(tiny_llama, bpe_tokenizer, objective):
    """Single-token label words: one row per example; scores, loss and bias gradients as one row per
    pair."""
    from beft.tasks.scoring import candidate_batch

    task = get_task("sst2", arch="decoder", train_objective=objective)
    prompts = [task.prompt.prompt(ex) for ex in SST]
    cands = [task.prompt.candidates(ex) for ex in SST]
    labels = [ex["label"] for ex in SST]
    fast = candidate_batch(bpe_tokenizer, prompts, cands, labels, 64)
    slow = candidate_batch(bpe_tokenizer, prompts, cands, labels, 64, shared_prompt=False)
    assert "next_token" in fast and fast["input_ids"].shape[0] == len(
        SST
    )  # the fast path was taken
    assert "next_token" not in slow and slow["input_ids"].shape[0] == 2 * len(SST)
    p = tiny_llama.model.layers[0].self_attn.v_proj.weight

    def loss_and_grad(model, batch):
        p.grad = None
        loss = task.loss(model, batch)
        loss.backward()
        return loss.item(), p.grad.clone()

    lf, gf = loss_and_grad(tiny_llama, fast)
    ls, gs = loss_and_grad(tiny_llama, slow)
    assert lf == pytest.approx(ls, abs=1e-5) and torch.allclose(gf, gs, atol=1e-6)
    lw, gw = loss_and_grad(NoKwargsWrapper(tiny_llama), fast)  # full-logits fallback
    assert lw == pytest.approx(ls, abs=1e-5) and torch.allclose(gw, gs, atol=1e-6)
    p.grad = None
    with torch.no_grad():
        assert mean_loglik(tiny_llama, fast).tolist() == pytest.approx(
            mean_loglik(tiny_llama, slow).tolist(), abs=1e-5
        )
    assert task.predict(tiny_llama, fast) == task.predict(tiny_llama, slow)


def test_multi_token_candidates_keep_one_row_per_pair(bpe_tokenizer):
    batch = get_task("copa", arch="decoder").collate(bpe_tokenizer, COPA, 64)
    assert "next_token" not in batch and batch["input_ids"].shape[0] == 2
