"""Decoder prompts (MeZO-style templates) as data: a prompt function and its candidates.

A classification task lists label words in label order; a multiple-choice task builds its
candidates from the example. The gold candidate is always `candidates(ex)[ex["label"]]`.
Trailing spaces belong to the candidate (" great"), never to the prompt, so BPE merges
read as in running text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChoicePrompt:
    prompt: Callable[[dict], str]
    candidates: Callable[[dict], list[str]]


@dataclass(frozen=True)
class GenPrompt:
    prompt: Callable[[dict], str]  # the model continues with " <answer>\n"


def words(*labels: str) -> Callable[[dict], list[str]]:
    return lambda ex: list(labels)


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def copa_prompt(ex: dict) -> str:
    conj = {"cause": " because", "effect": " so"}[ex["question"]]
    return ex["premise"].rstrip().rstrip(".") + conj


CHOICE: dict[str, ChoicePrompt] = {
    "sst2": ChoicePrompt(lambda ex: f"{ex['text_a'].strip()} It was", words(" terrible", " great")),
    "rte": ChoicePrompt(
        lambda ex: (
            f"{ex['premise']}\nDoes this mean that \"{ex['hypothesis']}\" is true? Yes or No?\n"
        ),
        words("Yes", "No"),
    ),  # entailment, not_entailment
    "cb": ChoicePrompt(
        lambda ex: (
            f"Suppose {ex['premise']} Can we infer that \"{ex['hypothesis']}\"? "
            "Yes, No, or Maybe?\n"
        ),
        words("Yes", "No", "Maybe"),
    ),  # entailment, contradiction, neutral
    "boolq": ChoicePrompt(lambda ex: f"{ex['passage']} {ex['question']}?", words(" No", " Yes")),
    "wsc": ChoicePrompt(
        lambda ex: (
            f"{ex['text']}\nIn the previous sentence, does the pronoun "
            f"\"{ex['span2_text'].lower()}\" refer to {ex['span1_text']}? Yes or No?\n"
        ),
        words("No", "Yes"),
    ),
    "wic": ChoicePrompt(
        lambda ex: (
            f"Does the word \"{ex['word']}\" have the same meaning in these two sentences? "
            f"Yes, No?\n{ex['sentence1']}\n{ex['sentence2']}\n"
        ),
        words("No", "Yes"),
    ),
    "multirc": ChoicePrompt(
        lambda ex: (
            f"{ex['passage']}\nQuestion: {ex['question']}\nI found this answer "
            f"\"{ex['answer']}\". Is that correct? Yes or No?\n"
        ),
        words("No", "Yes"),
    ),
    "copa": ChoicePrompt(
        copa_prompt, lambda ex: [" " + lower_first(ex["choice1"]), " " + lower_first(ex["choice2"])]
    ),
    "record": ChoicePrompt(
        lambda ex: ex["passage"].replace("@highlight\n", "- ") + "\n-",
        lambda ex: [" " + ex["query"].replace("@placeholder", c) for c in ex["candidates"]],
    ),
}

GEN: dict[str, GenPrompt] = {
    "squad": GenPrompt(
        lambda ex: (
            f"Title: {ex['title']}\nContext: {ex['context']}\nQuestion: {ex['question']}\nAnswer:"
        )
    ),
    "drop": GenPrompt(lambda ex: f"Passage: {ex['context']}\nQuestion: {ex['question']}\nAnswer:"),
}


def with_demonstrations(prompt: ChoicePrompt, demos: list[dict], sep: str = "\n\n") -> ChoicePrompt:
    """In-context learning: each demonstration's prompt + gold candidate, then the query prompt."""
    shown = sep.join(prompt.prompt(ex) + prompt.candidates(ex)[ex["label"]] for ex in demos)
    return ChoicePrompt(
        lambda ex: shown + sep + prompt.prompt(ex) if demos else prompt.prompt(ex),
        prompt.candidates,
    )
