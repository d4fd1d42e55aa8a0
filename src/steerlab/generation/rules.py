"""Logits rules: per-row changes to the next-token scores before a token is chosen.

A rule is ``rule(rows, gen, logits) -> logits``: ``rows[j]`` is the prompt index of logits row j, ``gen[j]`` the
tokens that row generated so far. Rules force a token sequence (prefill a call marker), forbid tokens while a reply
has not started (keep a marker from appearing), or mask everything a grammar does not allow. A row setup passed to
``generate`` may carry one as its ``logits_rule`` attribute (an action that decides per row during the prompt's
forward, then shapes that row's decoding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

LogitsRule = Callable[[Sequence[int], Sequence[Sequence[int]], torch.Tensor], torch.Tensor]


def force_tokens(logits: torch.Tensor, j: int, token: int) -> None:
    """Row j may only emit ``token``."""
    keep = logits[j, token].clone()
    logits[j].fill_(float("-inf"))
    logits[j, token] = keep if torch.isfinite(keep) else 0.0


class ForcedPrefix:
    """Rows named by ``which(prompt_index)`` (a token sequence or None) start their reply with those tokens."""

    def __init__(self, which: Callable[[int], Sequence[int] | None]) -> None:
        self.which = which

    def __call__(
        self, rows: Sequence[int], gen: Sequence[Sequence[int]], logits: torch.Tensor
    ) -> torch.Tensor:
        for j, i in enumerate(rows):
            seq = self.which(i)
            if seq and len(gen[j]) < len(seq) and list(gen[j]) == list(seq[: len(gen[j])]):
                force_tokens(logits, j, int(seq[len(gen[j])]))
        return logits


class BannedStart:
    """Rows named by ``applies(prompt_index)`` cannot begin their reply (after any whitespace) with ``marker``:
    while a row has produced only whitespace, every token whose text could begin the marker is banned."""

    def __init__(self, tokenizer: object, marker: str, applies: Callable[[int], bool]) -> None:
        self.tokenizer, self.marker, self.applies = tokenizer, marker, applies
        self.banned = torch.tensor(marker_start_ids(tokenizer, marker), dtype=torch.long)

    def __call__(
        self, rows: Sequence[int], gen: Sequence[Sequence[int]], logits: torch.Tensor
    ) -> torch.Tensor:
        for j, i in enumerate(rows):
            if self.applies(i) and not self.tokenizer.decode(list(gen[j]), skip_special_tokens=False).strip():
                logits[j, self.banned.to(logits.device)] = float("-inf")
        return logits


_MARKER_IDS: dict[tuple[int, str], list[int]] = {}


def marker_start_ids(tokenizer: object, marker: str) -> list[int]:
    """Every token whose text, leading whitespace removed, is a non-empty prefix of ``marker`` or starts with it:
    the tokens a reply that opens with the marker can begin with (remembered per tokenizer)."""
    key = (id(tokenizer), marker)
    if key not in _MARKER_IDS:
        out = []
        for tid in range(len(tokenizer)):
            text = tokenizer.decode([tid], skip_special_tokens=False).lstrip()
            if text and (marker.startswith(text) or text.startswith(marker)):
                out.append(tid)
        _MARKER_IDS[key] = out
    return _MARKER_IDS[key]


class _Composed:
    """Several rules applied in turn; a row's fixed tail is the first one a rule knows."""

    def __init__(self, rules: list[LogitsRule]) -> None:
        self.rules = rules

    def __call__(
        self, rows: Sequence[int], gen: Sequence[Sequence[int]], logits: torch.Tensor
    ) -> torch.Tensor:
        for r in self.rules:
            logits = r(rows, gen, logits)
        return logits

    def fixed_tail(self, row: int, gen: Sequence[int]) -> list[int] | None:
        return fixed_tail(self.rules, row, gen)


def fixed_tail(rules: Sequence[LogitsRule], row: int, gen: Sequence[int]) -> list[int] | None:
    """The tokens a row must end with, once a rule knows them all (e.g. the closer after a complete call): decoding
    appends them without running the model for each (optional method ``fixed_tail(row, gen)`` of a rule)."""
    for r in rules:
        f = getattr(r, "fixed_tail", None)
        tail = f(row, gen) if f is not None else None
        if tail is not None:
            return tail
    return None


def compose(rules: Sequence[LogitsRule | None]) -> LogitsRule | None:
    active = [r for r in rules if r is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return _Composed(active)
