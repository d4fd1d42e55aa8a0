"""What a capture returns; its own module so that the capture and its on-disk cache both use it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Positions = str | int | Sequence[int]


@dataclass
class Activations:
    """Captured states. ``acts[(layer, site)]`` is ``[N, d]`` for one position per prompt, ``[N, P, d]`` for P given
    positions, and a list of ``[len_i, d]`` tensors for ``positions='all'``."""

    data: dict[tuple[int, str], torch.Tensor | list[torch.Tensor]]
    positions: Positions
    lengths: list[int]

    def __getitem__(self, key: tuple[int, str] | int) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(key, int):
            key = (key, "block")
        if key not in self.data:
            raise KeyError(f"{key} was not captured; captured: {sorted(self.data)}")
        return self.data[key]

    def keys(self) -> list[tuple[int, str]]:
        return list(self.data)
