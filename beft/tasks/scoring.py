"""Candidate scoring for causal LMs: one right-padded forward over all (example, candidate) pairs.

A pair is prompt tokens + candidate tokens; its score is the MEAN log-likelihood of the candidate
tokens given everything before them.

Fast path: when every candidate of every example in the batch is one token after the same prompt
tokens (label words such as " positive" / " negative", "Yes" / "No" / "Maybe"), the batch holds one
row per example (the prompt) plus `next_token` (P,), and one forward scores all candidates from the
next-token distribution at the prompt's last position: C times less compute than one row per pair,
with the same scores.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F


def pad_id(tokenizer) -> int:
    """The pad token, else eos (LLaMA/OPT-style tokenizers may have no pad token)."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise ValueError("tokenizer has neither a pad token nor an eos token")
    return pid


def encode_pair(tokenizer, prompt: str, cand: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt+candidate and the candidate's token count.

    Candidate tokens are the suffix of tokenize(prompt + cand) past tokenize(prompt) when the
    latter is a prefix (so merges read as in running text); else cand is tokenized alone.
    Overlong pairs lose prompt tokens from the left; the candidate is kept.
    """
    p = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + cand)["input_ids"]
    if full[: len(p)] == p and len(full) > len(p):
        c = full[len(p) :]
    else:
        c = tokenizer(cand, add_special_tokens=False)["input_ids"]
    c = c[:max_length]
    keep = max_length - len(c)
    return (p[len(p) - keep :] if keep > 0 else []) + c, len(c)


def pad_right(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def candidate_batch(
    tokenizer,
    prompts: list[str],
    candidates: list[list[str]],
    labels: list[int],
    max_length: int,
    shared_prompt: bool = True,
) -> dict[str, torch.Tensor]:
    """Flatten (example i, candidate j) into P pairs; `pair_example`/`pair_slot` map back.
    shared_prompt=False turns the single-token fast path off (one row per pair)."""
    ids, targets, ex_of, slot_of = [], [], [], []
    for i, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
        for j, cand in enumerate(cands):
            seq, n = encode_pair(tokenizer, prompt, cand, max_length)
            ids.append(seq)
            targets.append([0] * (len(seq) - n) + [1] * n)
            ex_of.append(i)
            slot_of.append(j)
    shared = _shared_prompt_rows(ids, targets, ex_of, len(prompts)) if shared_prompt else None
    if shared is not None:
        return {
            "input_ids": pad_right(shared, pad_id(tokenizer)),  # (B, L) prompts only
            "attention_mask": pad_right([[1] * len(s) for s in shared], 0),
            "next_token": torch.tensor(
                [s[-1] for s in ids], dtype=torch.long
            ),  # (P,) each pair's one token
            "pair_example": torch.tensor(ex_of, dtype=torch.long),
            "pair_slot": torch.tensor(slot_of, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }
    return {
        "input_ids": pad_right(ids, pad_id(tokenizer)),  # (P, L)
        "attention_mask": pad_right([[1] * len(s) for s in ids], 0),  # (P, L)
        "target_mask": pad_right(targets, 0),  # (P, L) 1 on candidate tokens
        "pair_example": torch.tensor(ex_of, dtype=torch.long),  # (P,)
        "pair_slot": torch.tensor(slot_of, dtype=torch.long),  # (P,)
        "labels": torch.tensor(labels, dtype=torch.long),  # (B,) gold slot
    }


def _shared_prompt_rows(
    ids: list[list[int]], targets: list[list[int]], ex_of: list[int], n_examples: int
) -> list[list[int]] | None:
    """One prompt row per example if every pair is that prompt + one candidate token, else None."""
    rows: list[list[int] | None] = [None] * n_examples
    for seq, tgt, i in zip(ids, targets, ex_of):
        if sum(tgt) != 1 or len(seq) < 2:
            return None
        if rows[i] is None:
            rows[i] = seq[:-1]
        elif rows[i] != seq[:-1]:
            return None
    return rows if all(r is not None for r in rows) else None


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _forward_kw(model) -> dict:
    # no KV cache: scoring and training never decode step by step, and building it costs time and
    # memory
    return {"use_cache": False} if _accepts(model, "use_cache") else {}


def next_token_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(P,) log p(candidate token | prompt) for a shared-prompt batch (see the module doc)."""
    ids, am = batch["input_ids"], batch["attention_mask"]
    last = am.sum(1) - 1  # (B,) right padded
    positions, row_pos = torch.unique(last, return_inverse=True)
    kw = _forward_kw(model)
    if _accepts(model, "logits_to_keep"):  # only the (at most B) positions needed
        logits = model(input_ids=ids, attention_mask=am, logits_to_keep=positions, **kw).logits
        logits = logits[torch.arange(ids.shape[0]), row_pos]  # (B, V)
    else:
        logits = model(input_ids=ids, attention_mask=am, **kw).logits[
            torch.arange(ids.shape[0]), last
        ]
    lp = torch.log_softmax(logits.float(), -1)  # (B, V)
    return lp[batch["pair_example"], batch["next_token"]]


def target_logits(
    model, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, T, V) logits predicting each position from the first target on, the (P, T) tokens they
    predict and the (P, T) target mask.

    Logits are only materialised from the first target position on when the model supports
    `logits_to_keep` (HF causal LMs do), which saves (P, L, V) memory on long prompts.
    """
    ids, tmask = batch["input_ids"], batch["target_mask"]
    has = tmask.any(0).nonzero()
    first = max(int(has[0]) - 1, 0) if len(has) else 0  # first position that predicts a target
    keep = ids.shape[1] - first
    kw = {"logits_to_keep": keep} if _accepts(model, "logits_to_keep") else {}
    logits = model(
        input_ids=ids, attention_mask=batch["attention_mask"], **kw, **_forward_kw(model)
    ).logits
    return (
        logits[:, -keep:-1],
        ids[:, first + 1 :],
        tmask[:, first + 1 :],
    )  # logits predict ids[:, first+1:]


def target_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p of each target token and the matching mask, both (P, T)."""
    logits, targets, tmask = target_logits(model, batch)
    lp = -F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    return lp.view(targets.shape), tmask.to(lp.dtype)


def completion_batch(
    tokenizer, prompts: list[str], completions: list[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Right-padded prompt + completion rows; `target_mask` marks the completion tokens."""
    pairs = [
        encode_pair(tokenizer, p, c, max_length) for p, c in zip(prompts, completions, strict=True)
    ]
    return {
        "input_ids": pad_right([s for s, _ in pairs], pad_id(tokenizer)),  # (B, L)
        "attention_mask": pad_right([[1] * len(s) for s, _ in pairs], 0),
        "target_mask": pad_right([[0] * (len(s) - n) + [1] * n for s, n in pairs], 0),
    }


def completion_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) per row: the mean negative log-likelihood of its target tokens."""
    lp, m = target_logprobs(model, batch)
    return -(lp * m).sum(-1) / m.sum(-1).clamp(min=1)


def completion_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token-mean negative log-likelihood of all target tokens of the batch."""
    lp, m = target_logprobs(model, batch)
    return -(lp * m).sum() / m.sum().clamp(min=1)


def mean_loglik(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(P,) mean log-likelihood of each pair's candidate tokens."""
    if "next_token" in batch:
        return next_token_logprobs(model, batch)
    lp, m = target_logprobs(model, batch)
    return (lp * m).sum(-1) / m.sum(-1).clamp(min=1)


def score_matrix(scores: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(P,) pair scores -> (B, C) with -inf where an example has fewer than C candidates."""
    ex, slot = batch["pair_example"], batch["pair_slot"]
    out = scores.new_full((batch["labels"].shape[0], int(slot.max()) + 1), float("-inf"))
    out[ex, slot] = scores
    return out


def row_examples(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The example (index in the batch) of every row the model runs: one row per example, except
    a batch of (prompt, candidate) pairs without a shared prompt, which has one row per pair."""
    if "pair_example" in batch and "next_token" not in batch:
        return batch["pair_example"]
    return torch.arange(batch["input_ids"].shape[0])


def gold_lm_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) per example: the mean negative log-likelihood of its gold candidate's tokens."""
    gold = batch["pair_slot"] == batch["labels"][batch["pair_example"]]  # one gold pair per example
    if "next_token" in batch:
        nll = -next_token_logprobs(model, batch)
    else:
        lp, m = target_logprobs(model, batch)
        nll = -(lp * m).sum(-1) / m.sum(-1).clamp(min=1)
    out = nll.new_zeros(batch["labels"].shape[0])
    out[batch["pair_example"][gold]] = nll[gold]
    return out


def gold_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token-mean negative log-likelihood of the gold candidates' tokens only."""
    if "next_token" in batch:
        gold = batch["pair_slot"] == batch["labels"][batch["pair_example"]]
        return -next_token_logprobs(model, batch)[gold].mean()
    lp, m = target_logprobs(model, batch)
    gold = batch["pair_slot"] == batch["labels"][batch["pair_example"]]  # (P,)
    m = m * gold[:, None].to(m.dtype)
    return -(lp * m).sum() / m.sum().clamp(min=1)
