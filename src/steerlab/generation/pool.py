"""Rows of many batches and conditions decoding in one running batch (``generate_conditions``).

Why: a batch decoded to its end spends its last steps on the few rows that decode longest (on the ASA evaluate stage
at 64 TEST prompts, 78 of 268 decode steps carried one row). A CPU decode step costs about the same for one row as
for eight (the weights are read once either way), so a batch's tail is almost free to fill: each batch x condition,
once its last prompt token is computed, joins the rows already decoding, and the pool steps while it holds more than
its limits; a row leaves the moment it stops. Exact: each row decodes as it would alone (tests compare).
"""

from __future__ import annotations

import copy

from .decode import Decoder, Generation


class DecodePool:
    """A running decoder that fresh decoders join (``add``), stepped while it holds more than ``rows`` rows or more
    than ``tokens`` cache slots (``Decoder.live_tokens``: each row's room to grow counted; None: no cap); ``add`` and
    ``finish`` return the (prompt index, result) of the rows that stopped."""

    def __init__(self, rows: int, tokens: int | None) -> None:
        if rows < 1:
            raise ValueError(f"a decode pool needs rows >= 1, got {rows}")
        self.rows, self.tokens = rows, tokens
        self.dec: Decoder | None = None

    def joinable(self, dec: Decoder) -> bool:
        """Whether ``dec`` may join (always, when the pool is empty and ``dec`` can drop finished rows)."""
        return dec.compact and not dec.handles and (self.dec is None or self.dec.joinable(dec))

    def add(self, dec: Decoder) -> list[tuple[int, Generation]]:
        """Join ``dec``'s rows (their cache is copied: the caller may reuse its buffers), then step while over the
        limits."""
        if not self.joinable(dec):
            raise ValueError("this decoder cannot join the pool (see DecodePool.joinable)")
        if self.dec is None:  # its cache is a shared context's, which the next condition restores and reuses
            dec.cache = _own_copy(dec.cache)
            self.dec = dec
        else:
            self.dec.join(dec)
        out: list[tuple[int, Generation]] = []
        while self.dec is not None and self._over():
            out += self._step()
        return out

    def _over(self) -> bool:
        d = self.dec
        return len(d.live) > self.rows or (self.tokens is not None and d.live_tokens() > self.tokens)

    def _step(self) -> list[tuple[int, Generation]]:
        dec = self.dec
        dec.step()
        out = dec.pop_finished()
        if dec.finished:
            self.dec = None
        return out

    def finish(self) -> list[tuple[int, Generation]]:
        """Step until every row has stopped."""
        out: list[tuple[int, Generation]] = []
        while self.dec is not None:
            out += self._step()
        return out


def _own_copy(cache: object) -> object:
    """The cache with its own layer objects and tensors (a croppable cache: plain or shared-prefix rows)."""
    own = copy.copy(cache)
    own.layers = []
    for layer in cache.layers:
        mine = copy.copy(layer)
        mine.keys, mine.values = layer.keys.clone(), layer.values.clone()
        own.layers.append(mine)
    return own
