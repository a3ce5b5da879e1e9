"""Encoder collate / loss / predict with the real MiniLM tokenizer and a tiny random BERT."""

import pytest
import torch
import torch.nn.functional as F

from beft.tasks import get_task

PAIRS = [
    {"text_a": "A man is playing a flute.", "text_b": "A man plays music.", "label": 1},
    {"text_a": "Stocks fell.", "text_b": "The cat slept on the warm mat all day.", "label": 0},
    {"text_a": "Good.", "text_b": "Fine.", "label": 1},
]


def test_collate_pairs_deterministic(bert_tokenizer):
    task = get_task("mrpc")
    a, b = task.collate(bert_tokenizer, PAIRS, 16), task.collate(bert_tokenizer, PAIRS, 16)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["input_ids"].shape[0] == 3 and a["input_ids"].shape[1] <= 16
    assert a["labels"].dtype == torch.long and a["labels"].tolist() == [1, 0, 1]
    assert (a["token_type_ids"] == 1).any()  # the second text is encoded as segment B


def test_single_sentence_has_no_segment_b(bert_tokenizer):
    batch = get_task("sst2").collate(
        bert_tokenizer, [{"text_a": "great", "text_b": None, "label": 1}], 8
    )
    assert not (batch["token_type_ids"] == 1).any()


def test_classification_loss_is_cross_entropy_and_trains(bert_tokenizer, tiny_bert):
    task = get_task("mrpc")
    model = tiny_bert(bert_tokenizer, task.num_labels)
    batch = task.collate(bert_tokenizer, PAIRS, 32)
    loss = task.loss(model, batch)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert loss.item() == pytest.approx(F.cross_entropy(logits, batch["labels"]).item(), abs=1e-6)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(8):
        loss = task.loss(model, batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    model.eval()
    preds = task.predict(model, batch)
    assert len(preds) == 3 and set(preds) <= {0, 1}
    assert "f1" in task.metrics(preds, PAIRS)


def test_regression_uses_mse_on_single_logit(bert_tokenizer, tiny_bert):
    task = get_task("stsb")
    assert task.num_labels == 1 and task.main_metric == "spearman"
    examples = [dict(ex, label=s) for ex, s in zip(PAIRS, [4.5, 0.5, 2.0])]
    model = tiny_bert(bert_tokenizer, 1)
    batch = task.collate(bert_tokenizer, examples, 32)
    assert batch["labels"].dtype == torch.float32
    loss = task.loss(model, batch)
    preds = task.predict(model, batch)
    assert loss.item() == pytest.approx(
        F.mse_loss(torch.tensor(preds), batch["labels"]).item(), rel=1e-5
    )
    assert set(task.metrics(preds, examples)) == {"spearman", "pearson"}


def test_superglue_encoder_texts(bert_tokenizer):
    cb = get_task("cb")
    batch = cb.collate(
        bert_tokenizer, [{"premise": "It rained.", "hypothesis": "It was wet.", "label": 2}], 32
    )
    assert cb.num_labels == 3 and batch["labels"].tolist() == [2]
    wic = get_task("wic")
    ex = {
        "word": "bank",
        "sentence1": "The river bank .",
        "sentence2": "The bank closed .",
        "label": 0,
    }
    text = bert_tokenizer.decode(wic.collate(bert_tokenizer, [ex], 32)["input_ids"][0])
    assert text.startswith("[CLS] bank : the river bank")


def test_sst2_real_batch_end_to_end(task_data, bert_tokenizer, tiny_bert):
    task = get_task("sst2", arch="encoder")
    splits = task.load(task_data, "low", seed=0, n_eval=16)
    model = tiny_bert(bert_tokenizer, task.num_labels)
    batch = task.collate(bert_tokenizer, splits.eval, 64)
    preds = task.predict(model, batch)
    out = task.metrics(preds, splits.eval)
    assert 0.0 <= out["accuracy"] <= 1.0 and len(preds) == 16
