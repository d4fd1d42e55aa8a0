"""ASA's router, probes and directions, as a steering controller (the steering layer owns the hook).

Read the state at layer L of the last prompt token, route it to a domain, score p(tool) with that domain's probe,
gate it (``TernaryGate``: +1 if p > tau, -1 if p < 1 - tau, else 0) and add gate * strength * direction once, at
that token, during prefill; strength is in units of the mean hidden-state norm at L. The direction is the paper's
unit(v_domain + beta v_global) (kind ``asa``), the global mean difference alone (``global``) or a direction read off
the model's behaviour (``grad``, ``behav``; see ``asa.directions``). Whether a closed gate (-1) pushes the other way
(the paper) or leaves the state alone (while the action forbids the call marker) is ``push_close``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..probes import LogisticProbe, Router
from ..vectors import random_direction
from .gate import TernaryGate, check_tau, ternary_gate
from .gates import ProbeGate

__all__ = ["MODES", "AsaController", "AsaParams", "Decision", "TernaryGate", "check_tau", "ternary_gate"]

MODES = ("full", "no_gate", "global_only", "domain_only", "random", "negative", "oracle")


@dataclass
class AsaParams:
    """Everything fitted for one layer: router, probes, directions and the norm unit."""

    layer: int
    domains: list[str]
    router: Router
    probes: dict[str, LogisticProbe]
    v_domain: dict[str, torch.Tensor]
    v_global: torch.Tensor
    mean_norm: float
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # named global directions (grad, behav)
    gate: ProbeGate | None = None  # a shared / all-layer gate in place of the per-domain probes (asa.gates)

    @property
    def gate_kind(self) -> str:
        return "domain" if self.gate is None else self.gate.kind

    @property
    def gate_layers(self) -> tuple[int, ...]:
        """The layers whose last-prompt-token states the gate reads."""
        return (self.layer,) if self.gate is None else self.gate.layers

    def _at_layer(self, h: torch.Tensor) -> torch.Tensor:
        """The state at this layer: ``h`` [B, d] is that state; [B, n, d] holds layer k at index k."""
        return h[:, self.layer] if h.dim() == 3 else h

    def route(self, h: torch.Tensor) -> torch.Tensor:
        return self.router.predict(self._at_layer(h))

    def p_tool(self, h: torch.Tensor, dom_idx: torch.Tensor | None = None) -> torch.Tensor:
        """p(tool): from the gate when there is one (it reads ``h`` [B, n, d], layer k at index k; a shared gate also
        takes the state at this layer [B, d]), else from the probe of each row's routed domain."""
        if self.gate is not None:
            if h.dim() == 3:
                return self.gate.prob(h)
            if self.gate.layers != (self.layer,):
                raise ValueError(
                    f"the {self.gate.kind} gate reads layers {list(self.gate.layers)}: give states [batch, layers, d]"
                )
            return self.gate.probe.prob(h)
        h = self._at_layer(h)
        dom_idx = self.route(h) if dom_idx is None else dom_idx
        p = torch.empty(h.shape[0], device=h.device)
        for k, name in enumerate(self.domains):
            rows = dom_idx == k
            if rows.any():
                p[rows] = self.probes[name].prob(h[rows])
        return p

    def directions(self, dom_idx: torch.Tensor, beta: float, direction: str = "asa") -> torch.Tensor:
        """The unit direction per row: unit(v_domain + beta * v_global) for ``asa``, else a named global one."""
        n = len(dom_idx)
        if direction == "asa":
            vd = torch.stack([self.v_domain[d] for d in self.domains])[dom_idx.cpu()]
            v = vd + beta * self.v_global.unsqueeze(0)
            return v / v.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        if direction == "global":
            v = self.v_global
        elif direction in self.extra:
            v = self.extra[direction]
        else:
            raise ValueError(
                f"direction {direction!r} was not fitted at layer {self.layer}; have: asa, global, "
                f"{', '.join(self.extra) or '(no others)'}"
            )
        return (v / v.norm().clamp(min=1e-12)).expand(n, -1)

    def tensors(self) -> dict[str, torch.Tensor]:
        t = {**self.router.tensors("router"), "v_global": self.v_global}
        for d in self.domains:
            t.update(self.probes[d].tensors(f"probe.{d}"))
            t[f"v_domain.{d}"] = self.v_domain[d]
        for k, v in self.extra.items():
            t[f"dir.{k}"] = v
        if self.gate is not None:
            t.update(self.gate.tensors())
        return {
            k: v.detach().cpu().contiguous()
            if k.endswith(".layers")
            else v.detach().float().cpu().contiguous()
            for k, v in t.items()
        }

    @classmethod
    def from_tensors(
        cls, t: dict[str, torch.Tensor], layer: int, domains: list[str], mean_norm: float
    ) -> AsaParams:
        return cls(
            layer=layer,
            domains=list(domains),
            router=Router.from_tensors(t, domains, "router"),
            probes={d: LogisticProbe.from_tensors(t, f"probe.{d}") for d in domains},
            v_domain={d: t[f"v_domain.{d}"] for d in domains},
            v_global=t["v_global"],
            mean_norm=mean_norm,
            extra={k[len("dir.") :]: v for k, v in t.items() if k.startswith("dir.")},
            gate=ProbeGate.from_tensors(t, layer),
        )


@dataclass
class Decision:
    domain: torch.Tensor
    p_tool: torch.Tensor
    gate: torch.Tensor


class AsaController:
    """Callable for ``steering.steer(controller=...)``; ``mode`` selects ASA or one of its ablations.

    ``direction`` names the direction kind; ``push_open`` / ``push_close`` say whether an open (+1) / closed (-1)
    gate moves the state (prefill-only actions and forbid-on-close leave it alone, deciding only).
    ``row_strength`` (per batch row) overrides the strength row by row (0 leaves a row alone).
    """

    def __init__(
        self,
        params: AsaParams,
        strength: float,
        tau: float,
        beta: float = 0.0,
        mode: str = "full",
        oracle_labels: torch.Tensor | None = None,
        seed: int = 0,
        row_strength: torch.Tensor | None = None,
        direction: str = "asa",
        push_open: bool = True,
        push_close: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown ASA mode {mode!r}; valid: {', '.join(MODES)}")
        if mode == "oracle" and oracle_labels is None:
            raise ValueError("mode 'oracle' needs oracle_labels (1 tool / 0 non-tool per row)")
        self.gate = TernaryGate(tau)
        self.params, self.strength, self.tau, self.beta, self.mode = params, strength, tau, beta, mode
        self.direction, self.push_open, self.push_close = direction, push_open, push_close
        self.oracle_labels = oracle_labels
        self.row_strength = row_strength
        self.random_dir = random_direction(params.v_global.shape[0], seed) if mode == "random" else None
        self.decisions: list[Decision] = []

    def decide(self, h: torch.Tensor) -> Decision:
        dom = self.params.route(h)
        p = self.params.p_tool(h, dom)
        if self.mode == "oracle":
            gate = self.oracle_labels.to(h.device).float() * 2 - 1
        elif self.mode == "no_gate":
            gate = torch.ones_like(p)
        else:
            gate = self.gate(p)
        return Decision(dom, p, gate)

    def vectors(self, dom: torch.Tensor) -> torch.Tensor:
        p = self.params
        if self.mode == "global_only":
            return (p.v_global / p.v_global.norm()).expand(len(dom), -1)
        if self.mode == "domain_only":
            return p.directions(dom, 0.0)
        if self.mode == "random":
            return self.random_dir.expand(len(dom), -1)
        v = p.directions(dom, self.beta, self.direction)
        return -v if self.mode == "negative" else v

    def coefficients(self, d: Decision) -> torch.Tensor:
        """Per row: gate * strength * mean norm where the gate's side moves the state, else 0."""
        strength = self.row_strength if self.row_strength is not None else torch.tensor(self.strength)
        gate = d.gate.cpu()
        moves = (gate > 0) & self.push_open | (gate < 0) & self.push_close
        return gate * strength.float() * self.params.mean_norm * moves.float()

    def __call__(self, h_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.decide(h_last.float())
        self.decisions.append(d)
        return self.coefficients(d), self.vectors(d.domain).to(h_last.device)
