"""Choosing the next token per row: greedy, or temperature / nucleus sampling with a generator per row, so a
row's sample does not depend on which other rows share its batch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def per_row(value: object, n: int, name: str) -> list:
    """A scalar repeated n times, or a sequence of exactly n values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"{name} has {len(value)} values for {n} prompts; give one value or one per prompt"
            )
        return list(value)
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return per_row(value.tolist(), n, name)
    return [value] * n


class RowSampler:
    """Per-row temperature (0 = greedy), top-p and seed."""

    def __init__(
        self,
        n: int,
        temperature: float | Sequence[float] = 0.0,
        top_p: float | Sequence[float] = 1.0,
        seed: int | Sequence[int | None] | None = None,
    ) -> None:
        self.temps = [float(t) for t in per_row(temperature, n, "temperature")]
        self.top_ps = [float(p) for p in per_row(top_p, n, "top_p")]
        seeds = per_row(seed, n, "seed")
        for t in self.temps:
            if not math.isfinite(t) or t < 0:
                raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {t}")
        for p in self.top_ps:
            if not math.isfinite(p) or not 0 < p <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {p}")
        self.greedy = all(t == 0 for t in self.temps)
        self._gens: dict[int, torch.Generator] = {}
        for i, (t, s) in enumerate(zip(self.temps, seeds)):
            if t > 0:
                if s is not None and (isinstance(s, bool) or not isinstance(s, int)):
                    raise ValueError(f"seed must be an int or None, got {s!r}")
                g = torch.Generator()
                g.manual_seed(int(s) if s is not None else int(torch.randint(0, 2**62, (1,)).item()))
                self._gens[i] = g

    def pick(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """Next token per row of ``logits`` [n, vocab]; ``rows[j]`` is the prompt index of logits row j."""
        nxt = logits.argmax(dim=-1)
        if self.greedy:
            return nxt
        for j, i in enumerate(rows):
            t = self.temps[i]
            if t == 0:
                continue
            row = logits[j].float().cpu()
            # shifted so the best logit is 0: a tiny temperature gives -inf elsewhere (greedy), never inf/inf = NaN
            probs = torch.softmax((row - row.max()) / t, dim=-1)
            if not torch.isfinite(probs).all() or float(probs.sum()) <= 0:
                continue  # nothing left to sample from: the argmax stands
            p = self.top_ps[i]
            if p < 1:
                sorted_p, order = probs.sort(descending=True)
                keep = sorted_p.cumsum(0) - sorted_p < p  # the smallest set whose mass reaches p
                keep[0] = True  # the likeliest token always (a top_p below float32's range compares as 0)
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            nxt[j] = int(torch.multinomial(probs, 1, generator=self._gens[i]).item())
        return nxt
