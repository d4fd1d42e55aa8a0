"""The gate, on its own: a strict ternary decision from a probability (push, pull, or leave)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import UserError


def check_tau(tau: float) -> float:
    if not 0.5 < tau < 1.0:
        raise UserError(f"tau must satisfy 0.5 < tau < 1 (a strict ternary gate), got {tau}")
    return tau


@dataclass(frozen=True)
class TernaryGate:
    """+1 if p > tau, -1 if p < 1 - tau, else 0; strict comparisons, so tau = 0.5 would be no gate at all."""

    tau: float

    def __post_init__(self) -> None:
        check_tau(self.tau)

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        return (p > self.tau).float() - (p < 1 - self.tau).float()


def ternary_gate(p: torch.Tensor, tau: float) -> torch.Tensor:
    return TernaryGate(tau)(p)
