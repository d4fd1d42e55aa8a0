"""Baselines that expose answer-letter leaks: majority letter, letter prior, and a leak report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .mcq import LETTERS, MCQItem


def gold_letter_counts(items: list[MCQItem]) -> dict[str, int]:
    c = Counter(it.gold_letter for it in items)
    n_max = max(len(it.choices) for it in items)
    return {L: c.get(L, 0) for L in LETTERS[:n_max]}


def majority_letter_baseline(train: list[MCQItem], evaluate: list[MCQItem]) -> tuple[str, float]:
    """Always answer the letter most often correct on train; its accuracy on evaluate."""
    counts = gold_letter_counts(train)
    letter = max(counts, key=lambda k: (counts[k], -LETTERS.index(k)))
    return letter, sum(it.gold_letter == letter for it in evaluate) / len(evaluate)


def letter_prior_baseline(items: list[MCQItem]) -> dict[str, float]:
    """Accuracy of always answering each letter."""
    n = len(items)
    return {L: sum(it.gold_letter == L for it in items) / n for L in gold_letter_counts(items)}


@dataclass
class LeakReport:
    leaked: bool
    max_share: float
    expected_share: float
    letter: str
    counts: dict[str, int]
    message: str


def leak_report(items: list[MCQItem], threshold: float = 1.5) -> LeakReport:
    """Flag when one letter holds more than ``threshold`` x its fair share of gold answers (fair share: the mean of
    1/n_options over items)."""
    counts = gold_letter_counts(items)
    n = len(items)
    expected = sum(1 / len(it.choices) for it in items) / n
    letter = max(counts, key=counts.get)
    share = counts[letter] / n
    leaked = share > threshold * expected and n >= 20
    msg = (
        f"answer-letter leak: '{letter}' is correct for {share:.0%} of items (fair share {expected:.0%}); a model "
        f"or a steering vector can score by always answering '{letter}'"
        if leaked
        else f"no letter leak: most common gold letter '{letter}' holds {share:.0%} (fair share {expected:.0%})"
    )
    return LeakReport(leaked, share, expected, letter, counts, msg)
