"""Where a transcoder's training pairs come from: tensors already in memory, or (MLP input, MLP output) pairs
captured from texts chunk by chunk into a bounded buffer, so memory stays fixed however long the corpus is.

Both give minibatches of the same tokens at every layer asked for, so one capture feeds the transcoders of several
layers at once. ``CapturedPairs`` keeps everything when the corpus fits in its buffer (captured once, sampled from
memory, like materialising the pairs but without the second copy a concatenation makes); otherwise it streams: it
samples uniformly from the buffer and, each time half a buffer of samples has been drawn, overwrites a random half of
the buffer with newly captured tokens, starting over (texts reshuffled) at the end of the corpus.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Protocol

import torch

Pairs = dict[int, tuple[torch.Tensor, torch.Tensor]]


class PairSource(Protocol):
    """Minibatches of (x, y) per layer, the same tokens at every layer."""

    layers: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator, count: bool = True) -> Pairs: ...


class TensorPairs:
    """Pairs held in memory: ``{layer: (x [N, d_in], y [N, d_out])}`` with the same N at every layer."""

    def __init__(self, pairs: Pairs) -> None:
        if not pairs:
            raise ValueError("no pairs: give at least one layer's (x, y)")
        sizes = {int(x.shape[0]) for x, _ in pairs.values()} | {int(y.shape[0]) for _, y in pairs.values()}
        if len(sizes) != 1:
            rows = {k: (int(x.shape[0]), int(y.shape[0])) for k, (x, y) in pairs.items()}
            raise ValueError(f"x and y must have the same number of rows at every layer, got {rows}")
        (n,) = sizes
        if n == 0:
            raise ValueError("the pairs hold no rows")
        self.pairs, self.n = pairs, n
        self.layers = tuple(pairs)

    def sample(self, n: int, generator: torch.Generator, count: bool = True) -> Pairs:
        idx = torch.randint(0, self.n, (min(n, self.n),), generator=generator)
        return {k: (x[idx].float(), y[idx].float()) for k, (x, y) in self.pairs.items()}


class CapturedPairs:
    """(MLP input after its norm, MLP output) at ``layers`` for every token but the first of each text, captured
    ``chunk`` texts at a time into a buffer of at most ``buffer_tokens`` tokens per layer (see the module doc).

    ``tokens_captured`` and ``capture_seconds`` say how much model work the training cost."""

    def __init__(
        self,
        lm: object,
        texts: Sequence,
        layers: Sequence[int],
        *,
        buffer_tokens: int = 1 << 18,
        chunk: int = 64,
        capture_batch: int = 16,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if not texts:
            raise ValueError("no texts to capture pairs from")
        if buffer_tokens < 2:
            raise ValueError(f"buffer_tokens must be at least 2, got {buffer_tokens}")
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1 text, got {chunk}")
        self.lm, self.texts, self.layers = lm, list(texts), tuple(dict.fromkeys(int(k) for k in layers))
        self.cap, self.chunk, self.capture_batch, self.seed = buffer_tokens, chunk, capture_batch, seed
        self.progress = progress
        self.epoch, self.cursor = 0, 0
        self.order = self._order(0)
        self.tokens_captured, self.capture_seconds = 0, 0.0
        self.pending: list[Pairs] = []
        self.drawn = 0
        self._refill_gen = torch.Generator().manual_seed(seed + 7919)
        self.buf = self._take(self.cap, first=True)
        self.n = int(self.buf[self.layers[0]][0].shape[0])
        self.resident = self.epoch == 0 and self.cursor == len(self.texts) and not self.pending

    def describe(self) -> dict:
        """What the source did: for a result file."""
        return {
            "mode": "resident (the corpus fits: captured once)" if self.resident else "streamed",
            "buffer_tokens": self.n,
            "tokens_captured": self.tokens_captured,
            "capture_seconds": round(self.capture_seconds, 2),
            "epochs_started": self.epoch + 1,
        }

    # ---------------------------------------------------------------- capture
    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.texts)))
        random.Random(self.seed * 1000003 + epoch).shuffle(order)
        return order

    def _capture_chunk(self) -> Pairs:
        from .splice import mlp_pairs_at

        if self.cursor >= len(self.texts):
            self.epoch, self.cursor = self.epoch + 1, 0
            self.order = self._order(self.epoch)
        idx = self.order[self.cursor : self.cursor + self.chunk]
        self.cursor += len(idx)
        t0 = time.perf_counter()
        got = mlp_pairs_at(
            self.lm, [self.texts[i] for i in idx], self.layers, batch_size=self.capture_batch, progress=False
        )
        self.capture_seconds += time.perf_counter() - t0
        self.tokens_captured += int(got[self.layers[0]][0].shape[0])
        return got

    def _take(self, n: int, first: bool = False) -> Pairs:
        """``n`` new tokens, pending ones first; the first fill stops early where the corpus ends (it fits)."""
        parts: list[Pairs] = []
        have = 0
        while have < n:
            if self.pending:
                part = self.pending.pop(0)
            elif first and self.cursor >= len(self.texts):
                break
            else:
                part = self._capture_chunk()
            m = int(part[self.layers[0]][0].shape[0])
            if have + m > n:  # keep the rest for the next refill
                cut = n - have
                self.pending.insert(0, {k: (x[cut:], y[cut:]) for k, (x, y) in part.items()})
                part = {k: (x[:cut], y[:cut]) for k, (x, y) in part.items()}
                m = cut
            parts.append(part)
            have += m
        if not have:
            raise ValueError("the texts hold no tokens after the first of each")
        return {
            k: (torch.cat([p[k][0] for p in parts]), torch.cat([p[k][1] for p in parts])) for k in self.layers
        }

    # ---------------------------------------------------------------- sampling
    def sample(self, n: int, generator: torch.Generator, count: bool = True) -> Pairs:
        if count and not self.resident:
            self.drawn += n
            if self.drawn >= max(1, self.n // 2):
                self._refresh()
                self.drawn = 0
        idx = torch.randint(0, self.n, (min(n, self.n),), generator=generator)
        return {k: (x[idx], y[idx]) for k, (x, y) in self.buf.items()}

    def _refresh(self) -> None:
        half = max(1, self.n // 2)
        new = self._take(half)
        m = int(new[self.layers[0]][0].shape[0])
        slots = torch.randperm(self.n, generator=self._refill_gen)[:m]
        for k in self.layers:
            self.buf[k][0][slots] = new[k][0]
            self.buf[k][1][slots] = new[k][1]
