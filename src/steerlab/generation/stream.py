"""Continuous batching: one running decode that new rows join between steps, and that hands back each row as soon
as it stops.

Why: a server that decodes a batch to its end makes every request wait for the batch's longest reply, and a request
that arrives a moment after a batch starts waits for that whole batch. Here a finished row leaves at once (its
client gets its answer and may send the next request) and a new request is prefilled and joins the rows already
decoding at the next step, so the model's weights are read once per step for every row in flight.

Each admitted group keeps its own rules (stop rule, sampler, streaming callback, logits rule such as ASA's call
grammar) with its own prompt indices; a group's row setup (ASA's gate and push at the last prompt token) is active
during its prefill only, so a setup that would steer generated tokens (``touches_decode``) is refused.
Where rows cannot share a step (a cache that cannot drop rows, e.g. sliding-window layers; another shared prefix)
a group waits until the running rows are done. Exact: each row decodes as it would alone (tests compare).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Sequence

import torch

from ..models import LoadedModel
from ..models.phase import active_interventions, context_safe
from .decode import Decoder, DecodeRules, Generation, eos_ids
from .prefill import prefill, suffix_inputs
from .prefix_store import PrefixStore, stored_prefix


class _Parts:
    """The rules of the admitted groups, looked up by global prompt index (group k holds ``offsets[k]`` onward)."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.rules: list[DecodeRules] = []
        self.left: list[int] = []  # rows of each group not yet handed back

    def add(self, offset: int, n: int, rules: DecodeRules) -> None:
        self.offsets.append(offset)
        self.rules.append(rules)
        self.left.append(n)

    def find(self, i: int) -> tuple[DecodeRules, int]:
        k = bisect.bisect_right(self.offsets, i) - 1
        return self.rules[k], i - self.offsets[k]

    def drop_last(self) -> None:
        del self.offsets[-1], self.rules[-1], self.left[-1]

    def done(self, i: int) -> None:
        """Row ``i`` was handed back; a group with none left is forgotten."""
        k = bisect.bisect_right(self.offsets, i) - 1
        self.left[k] -= 1
        if self.left[k] == 0:
            del self.offsets[k], self.rules[k], self.left[k]

    def groups(self, rows: Sequence[int]) -> dict[int, list[int]]:
        """Logits rows j by group: {group: [j, ...]} for prompt indices ``rows``."""
        out: dict[int, list[int]] = {}
        for j, i in enumerate(rows):
            out.setdefault(bisect.bisect_right(self.offsets, i) - 1, []).append(j)
        return out


class _MaxNew:
    def __init__(self, parts: _Parts) -> None:
        self.parts = parts

    def __getitem__(self, i: int) -> int:
        rules, local = self.parts.find(i)
        return rules.max_new[local]


class _Sampler:
    """Each group's own sampler on its rows (greedy rows need none)."""

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts

    def pick(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        nxt = logits.argmax(dim=-1)
        for k, js in self.parts.groups(rows).items():
            sampler = self.parts.rules[k].sampler
            if not sampler.greedy:
                off = self.parts.offsets[k]
                nxt[js] = sampler.pick(logits[js], [rows[j] - off for j in js])
        return nxt


class _Rule:
    """Each group's logits rule on its rows, with the group's own prompt indices."""

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts

    def __call__(
        self, rows: Sequence[int], gen: Sequence[Sequence[int]], logits: torch.Tensor
    ) -> torch.Tensor:
        for k, js in self.parts.groups(rows).items():
            rule, off = self.parts.rules[k].logits_rule, self.parts.offsets[k]
            if rule is not None:
                logits[js] = rule([rows[j] - off for j in js], [gen[j] for j in js], logits[js])
        return logits

    def fixed_tail(self, row: int, gen: Sequence[int]) -> list[int] | None:
        rules, local = self.parts.find(row)
        f = getattr(rules.logits_rule, "fixed_tail", None)
        return None if f is None else f(local, gen)


class _JoinedRules(DecodeRules):
    """``DecodeRules`` over global prompt indices, each answered by the row's own group."""

    def __init__(self, eos: set[int]) -> None:
        self.parts = _Parts()
        super().__init__(
            eos,
            _MaxNew(self.parts),  # type: ignore[arg-type]
            _Sampler(self.parts),  # type: ignore[arg-type]
            on_token=self._on_token,
            logits_rule=_Rule(self.parts),
            cancelled=self._cancelled,
        )

    def needs_text(self) -> bool:
        return any(r.needs_text() for r in self.parts.rules)

    def stops(self, i: int, text: str) -> bool:
        rules, local = self.parts.find(i)
        return rules.stops(local, text)

    def _on_token(self, i: int, tok: int, delta: str) -> None:
        rules, local = self.parts.find(i)
        if rules.on_token is not None:
            rules.on_token(local, tok, delta)

    def _cancelled(self, i: int) -> bool:
        rules, local = self.parts.find(i)
        return rules.cancelled is not None and rules.cancelled(local)


class DecodeStream:
    """A running batch that rows join (``admit``) and leave (``step`` returns them) between decode steps.

    Rows admitted together are a group: prompt indices ``0 .. n-1`` in the group's ``rules`` and row setup; ``admit``
    returns the group's global offset, and ``step`` reports rows by global index (``offset + i``). ``store`` holds the
    shared heads' caches (``head``: the token ids every row of the group starts with, computed once and kept)."""

    def __init__(self, lm: LoadedModel, store: PrefixStore | None = None, fuse: bool = True) -> None:
        self.lm, self.store = lm, store
        self.fuse = fuse  # a group without a setup, or with a packable one, is prefilled inside the next step
        self.packed_rows = 0  # rows whose prompts went through a running step's forward
        self.eos = eos_ids(lm)
        self.rules = _JoinedRules(self.eos)
        self.dec: Decoder | None = None
        self._next = 0
        self._running_head: tuple[int, ...] | None = None  # the stored head the running rows share

    @property
    def rows(self) -> int:
        """Rows decoding now."""
        return 0 if self.dec is None else len(self.dec.live) + self.dec.pending_rows

    def __bool__(self) -> bool:
        return self.dec is not None

    def can_take(self, ids: Sequence[Sequence[int]], head: Sequence[int] | None, max_new: int) -> bool:
        """Whether rows could join the running batch now (always, when it is empty): a cheap check before building
        their rules. Not when the running cache keeps finished rows, when an intervention is active outside the
        stream, when a sliding window or conv state would see the padding, or when the rows share another stored
        head (or none) than the running rows'."""
        if self.dec is None:
            return True
        arch = self.lm.arch
        if not self.dec.compact or active_interventions(self.lm):
            return False
        if arch.sliding_window is not None or "conv" in arch.layer_kinds:
            return False
        return self._key(self._prefix(ids, head, max_new)) == self._running_head

    def admit(
        self,
        ids: Sequence[Sequence[int]],
        rules: DecodeRules,
        setup: object | None = None,
        head: Sequence[int] | None = None,
    ) -> int | None:
        """Prefill a group's rows (under ``setup(list(range(n)))`` when given, which must leave decoding alone) and
        join them to the running batch; None (nothing done) when they cannot share its steps: try again once
        ``step`` has emptied it."""
        rows = [list(map(int, r)) for r in ids]
        n = len(rows)
        if n == 0:
            raise ValueError("admit needs at least one row")
        rules = rules.with_rule(getattr(setup, "logits_rule", None))
        max_new = max(rules.max_new[i] for i in range(n))
        if not self.can_take(rows, head, max_new):
            return None
        prefix = self._prefix(rows, head, max_new)
        if self._fused(rows, rules, setup, prefix):
            return self._next - n
        before = {id(h) for h in active_interventions(self.lm)}
        with torch.inference_mode():
            with setup(list(range(n))) if setup is not None else contextlib.nullcontext():
                added = [h for h in active_interventions(self.lm) if id(h) not in before]
                if any(getattr(h, "touches_decode", True) for h in added):
                    raise ValueError(
                        "a row setup that steers (or records) generated tokens cannot join a running batch: its "
                        "hooks act during the group's prefill only; use generate() for it"
                    )
                if prefix is not None and not context_safe(self.lm):
                    prefix = None
                out, mask, last_pos = prefill(
                    self.lm, rows, len(prefix) if prefix else 0, prefix.cache() if prefix else None
                )
            off = self._next
            self.rules.parts.add(off, n, rules)
            dec = Decoder(self.lm, out, mask, last_pos + 1, rows, [off + i for i in range(n)], self.rules)
            if self.dec is None:
                self.dec, self._running_head = dec, self._key(prefix)
            elif self.dec.joinable(dec):
                self.dec.join(dec)
            else:  # e.g. the store recomputed the head meanwhile: the same tokens, another cache
                self.rules.parts.drop_last()
                return None
            self._next += n
        return off

    def _fused(
        self, rows: list[list[int]], rules: DecodeRules, setup: object | None, prefix: object | None
    ) -> bool:
        """Hand the group's prompts to the running decoder, to go through the model with its next step (one read of
        the weights for both, ``Decoder.add_prompt``); False where that is not exact or possible: a row setup that
        does not declare itself ``packable`` (its hooks must act at the rows' last prompt tokens alone), no shared
        prefix kept once, a context-touching intervention."""
        if setup is not None and not getattr(setup, "packable", False):
            return False
        if not self.fuse or prefix is None or self.dec is None:
            return False
        if not self.dec.fusable() or not context_safe(self.lm):
            return False
        suffix, smask, pos = suffix_inputs(self.lm, rows, len(prefix))
        off = self._next
        self.rules.parts.add(off, len(rows), rules)
        self.dec.add_prompt(rows, [off + i for i in range(len(rows))], suffix, smask, pos, setup)
        self._next += len(rows)
        self.packed_rows += len(rows)
        return True

    def _prefix(
        self, rows: Sequence[Sequence[int]], head: Sequence[int] | None, max_new: int
    ) -> object | None:
        rows = [list(r) for r in rows]
        return stored_prefix(self.lm, rows, max(map(len, rows)) + max_new, head, self.store)

    @staticmethod
    def _key(prefix: object | None) -> tuple[int, ...] | None:
        return None if prefix is None else tuple(prefix.ids)

    def step(self) -> list[tuple[int, Generation]]:
        """One decode step for every row in the batch; returns (global index, result) of the rows that stopped."""
        if self.dec is None:
            return []
        with torch.inference_mode():
            self.dec.step()
        return self._finished()

    def _finished(self) -> list[tuple[int, Generation]]:
        dec = self.dec
        if dec.compact:
            out = dec.pop_finished()
        elif dec.finished:  # a cache that keeps finished rows: its rows come back together
            out = list(zip(dec.index, dec.results()))
        else:
            out = []
        for i, _ in out:
            self.rules.parts.done(i)
        if dec.finished:
            self.dec = None
        return out

    def run(self) -> list[tuple[int, Generation]]:
        """Step until every row has stopped; every row's (global index, result)."""
        out: list[tuple[int, Generation]] = []
        while self.dec is not None:
            out += self.step()
        return out
