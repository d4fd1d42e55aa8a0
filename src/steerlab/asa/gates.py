"""Gates that read "this request needs one of the offered tools", next to ASA's router + per-domain probes.

- ``domain`` (ASA's): the router picks a domain, that domain's probe gives p(tool), from the state at the point's
  layer. Good inside the domains it was fitted on; it has no notion of which tools are offered.
- ``shared``: one probe across all requests on the state at the point's layer (the ASA paper's v3 "boundary"
  framing), fitted with the tool list in the context: the same request with and without a tool that serves it.
- ``all_layers``: one probe on the states of every layer up to and including the point's layer, concatenated and
  standardised, with strong L2 regularisation (Probe&Prefill / When2Tool, arXiv 2605.09252). Only layers up to the
  point's are read, so the decision is known when the forward reaches the layer where a push would be added.

A probe gate's bias can be shifted so that the gate opens (p > tau) exactly where its score passes a threshold
calibrated on held-out data to a target false-call rate (``ProbeGate.calibrated``). Its tensors live in the asset
under ``gate.*`` (safetensors), its kind in the operating point (``OperatingPoint.gate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..probes import LogisticProbe, fit_probe

GATES = ("domain", "shared", "all_layers")
PREFIX = "gate"


def gate_layers(kind: str, layer: int) -> tuple[int, ...]:
    """The layers a gate of ``kind`` reads when the point's layer is ``layer``."""
    if kind not in GATES:
        raise ValueError(f"unknown gate {kind!r}; valid: {', '.join(GATES)}")
    return tuple(range(layer + 1)) if kind == "all_layers" else (layer,)


@dataclass
class ProbeGate:
    """One logistic probe on the last-prompt-token states of ``layers`` (concatenated in that order)."""

    kind: str
    layers: tuple[int, ...]
    probe: LogisticProbe

    def features(self, states: torch.Tensor) -> torch.Tensor:
        """``states`` [B, n_layers_or_more, d] (index k = layer k) -> [B, len(layers) * d]."""
        if states.dim() != 3:
            raise ValueError(
                f"a {self.kind} gate reads layers {list(self.layers)}: give states [batch, layers, d], got "
                f"{tuple(states.shape)}"
            )
        if states.shape[1] <= max(self.layers):
            raise ValueError(
                f"a {self.kind} gate reads layers up to {max(self.layers)}; the states hold {states.shape[1]}"
            )
        return states[:, list(self.layers)].reshape(states.shape[0], -1).float()

    def logit(self, states: torch.Tensor) -> torch.Tensor:
        x = self.features(states)
        return self.probe.scaler(x) @ self.probe.weight.to(x.device) + self.probe.bias.to(x.device)

    def prob(self, states: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(states))

    def calibrated(self, threshold: float, tau: float) -> ProbeGate:
        """The same gate with its bias shifted so that p = tau exactly where the logit equals ``threshold``."""
        shift = math.log(tau / (1 - tau)) - threshold
        probe = replace(self.probe, bias=(self.probe.bias + shift).reshape(()))
        return ProbeGate(self.kind, self.layers, probe)

    def tensors(self) -> dict[str, torch.Tensor]:
        t = self.probe.tensors(PREFIX)
        t[f"{PREFIX}.layers"] = torch.tensor(list(self.layers), dtype=torch.int64)
        return t

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], layer: int) -> ProbeGate | None:
        """The probe gate stored in an asset's tensors, or None (a ``domain`` gate)."""
        if f"{PREFIX}.weight" not in t:
            return None
        layers = tuple(int(x) for x in t[f"{PREFIX}.layers"].tolist())
        kind = "shared" if layers == (layer,) else "all_layers"
        if layers != gate_layers(kind, layer):
            raise ValueError(
                f"the stored gate reads layers {list(layers)}; a gate at layer {layer} reads {[layer]} (shared) or "
                f"0..{layer} (all_layers)"
            )
        return cls(kind, layers, LogisticProbe.from_tensors(t, PREFIX))


def fit_gate(
    kind: str, layer: int, states: torch.Tensor, labels: np.ndarray, c: float, seed: int = 0
) -> ProbeGate:
    """Fit a ``shared`` or ``all_layers`` gate on states [N, n_layers, d] (index k = layer k)."""
    if kind == "domain":
        raise ValueError("the domain gate is ASA's router + per-domain probes (fit stage), not a probe gate")
    layers = gate_layers(kind, layer)
    x = states[:, list(layers)].reshape(states.shape[0], -1)
    return ProbeGate(kind, layers, fit_probe(x, labels, c=c, seed=seed))


def fpr_threshold(neg_logits: Sequence[float] | np.ndarray, target_fpr: float) -> float:
    """The smallest logit threshold at which at most ``target_fpr`` of the negatives score above it."""
    s = np.sort(np.asarray(neg_logits, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise ValueError("calibrating a threshold needs held-out negatives; there are none")
    k = int(math.floor(target_fpr * len(s) + 1e-9))  # negatives allowed above the threshold
    return float(s[k]) if k < len(s) else float(s[-1]) - 1e-6
