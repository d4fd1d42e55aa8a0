"""Acting on a batch with ASA's gate, written once: the pipeline's rows, the runtime (demo, chat, server) and the
BFCL evaluation all use ``GatedAction`` (``GatedSteering`` is its steering-only form).

The gate decides per row at the last prompt token, during the prompt's forward. Then, per row:
- ``steer``: add +strength * direction when the gate opens (and -strength * direction when it closes, if
  ``on_close="push"``, the paper's setting);
- ``prefill``: when the gate opens, the reply is made to start with the call marker;
- ``on_close="forbid"``: when the gate closes, the reply cannot start with the call marker;
- ``constrain``: after the marker, the call is decoded under its tool's JSON schema, with the tool named by the
  router's domain (``router``) or left to the model (``model``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from ..generation.rules import BannedStart, ForcedPrefix, compose
from ..models import LoadedModel
from ..steering import SteeringHandle, steer
from ..tools import format_spec
from .controller import AsaController, AsaParams, Decision
from .gate import ternary_gate
from .point import ACTIONS, CONSTRAIN, ON_CLOSE, OperatingPoint

__all__ = ["ACTIONS", "ANY_TOOL", "CONSTRAIN", "ON_CLOSE", "GatedAction", "GatedSteering", "call_rules"]

ANY_TOOL = "*"  # ``forced(i)``: the request requires a call to any of its tools (tool_choice "required")


class GatedSteering:
    """A row setup (``generate(..., row_setup=...)``): each batch gets its own controller at the last prompt token.

    ``labels`` (per prompt) feed the oracle gate; ``row_strength`` (per prompt) overrides the strength row by row,
    0 leaving a row unsteered. ``decisions()`` gives each prompt's routed domain, p(tool) and gate.
    """

    # its hooks read and push each row's last prompt token only (``prompt_last`` controllers), so a running batch may
    # take its rows' prompts into a decode step's forward (``steerlab.models.packed``)
    packable = True

    def __init__(
        self,
        lm: LoadedModel,
        params: AsaParams,
        *,
        strength: float,
        tau: float,
        beta: float,
        site: str = "block",
        mode: str = "full",
        labels: Sequence[int] | None = None,
        row_strength: Sequence[float] | None = None,
        seed: int = 0,
        direction: str = "asa",
        push_open: bool = True,
        push_close: bool = True,
    ) -> None:
        self.lm, self.params, self.site = lm, params, site
        self.strength, self.tau, self.beta, self.mode, self.seed = strength, tau, beta, mode, seed
        self.direction, self.push_open, self.push_close = direction, push_open, push_close
        self.labels = None if labels is None else torch.as_tensor(list(labels))
        self.row_strength = (
            None if row_strength is None else torch.as_tensor(list(row_strength), dtype=torch.float32)
        )
        self.gate_of: dict[int, int] = {}  # prompt index -> the gate its first forward decided (in this call)
        self.domain_of: dict[int, int] = {}
        self.p_of: dict[int, float] = {}

    def controller(self, idx: list[int]) -> AsaController:
        return AsaController(
            self.params,
            self.strength,
            self.tau,
            self.beta,
            self.mode,
            oracle_labels=None if self.labels is None else self.labels[idx],
            seed=self.seed,
            row_strength=None if self.row_strength is None else self.row_strength[idx],
            direction=self.direction,
            push_open=self.push_open,
            push_close=self.push_close,
        )

    def coefficients(self, d: Decision, idx: list[int], ctrl: AsaController) -> torch.Tensor:
        """Per batch row: the push of the controller's own rule; records each prompt's first decision."""
        for j, i in enumerate(idx):
            self.gate_of.setdefault(i, int(d.gate[j]))
            self.domain_of.setdefault(i, int(d.domain[j]))
            self.p_of.setdefault(i, float(d.p_tool[j]))
        return ctrl.coefficients(d)

    def __call__(self, idx: list[int]) -> SteeringHandle | contextlib.ExitStack:
        ctrl = self.controller(idx)
        batch = list(idx)
        for i in batch:  # a new batch of these prompts (the object reused for another call): decide afresh
            self.gate_of.pop(i, None)
            self.domain_of.pop(i, None)
            self.p_of.pop(i, None)
        layer = self.params.layer
        earlier = [k for k in self.params.gate_layers if k != layer]  # an all-layer gate reads these too
        seen: dict[int, torch.Tensor] = {}

        def decide_and_record(h_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = h_last.float()
            if earlier:  # layer k at index k, as the gate reads them (layers it does not read stay zero)
                stack = torch.zeros(h.shape[0], layer + 1, h.shape[1], device=h.device)
                for k in earlier:
                    stack[:, k] = seen[k].to(h.device)
                stack[:, layer] = h
                h = stack
            d = ctrl.decide(h)
            ctrl.decisions.append(d)
            return self.coefficients(d, batch, ctrl), ctrl.vectors(d.domain).to(h_last.device)

        main = steer(
            self.lm, None, layer=layer, site=self.site, policy="prompt_last", controller=decide_and_record
        )
        if not earlier:
            return main
        stack = contextlib.ExitStack()
        stack.enter_context(main)
        for k in earlier:
            stack.enter_context(
                steer(
                    self.lm, None, layer=k, site=self.site, policy="prompt_last", controller=_reader(seen, k)
                )
            )
        return stack

    def decisions(self, n: int) -> dict[str, torch.Tensor]:
        """Per prompt (in prompt order): ``domain`` index, ``p_tool`` and ``gate`` of the first forward that saw it
        (-1, NaN and 0 for a prompt no forward saw)."""
        out = {
            "domain": torch.full((n,), -1),
            "p_tool": torch.full((n,), float("nan")),
            "gate": torch.zeros(n),
        }
        for i in range(n):
            if i in self.gate_of:
                out["domain"][i] = self.domain_of[i]
                out["p_tool"][i] = self.p_of[i]
                out["gate"][i] = float(self.gate_of[i])
        return out


class GatedAction(GatedSteering):
    """An ``OperatingPoint`` acting on batches (see the module docstring); a row setup with its own ``logits_rule``.

    Built by ``OperatingPoint.bind``. Per prompt, ``rows[i]`` may be another point (other strength, tau, action,
    on_close or constrain; None: no ASA for that prompt, its gate still read and reported), ``forced(i)`` a call the
    request forces (a tool name, or ``ANY_TOOL``: the marker is prefilled whatever the gate, no push) and
    ``offered(i)`` the names of the tools the request offers (a routed tool it does not offer is never forced on a
    call: the call may name any offered tool instead).
    """

    def __init__(
        self,
        lm: LoadedModel,
        params: AsaParams,
        point: OperatingPoint,
        *,
        tools: Sequence[dict] | Callable[[int], Sequence[dict]] = (),
        ablation: str = "full",
        labels: Sequence[int] | None = None,
        seed: int = 0,
        rows: Sequence[OperatingPoint | None] | None = None,
        offered: Callable[[int], set[str] | None] | None = None,
        forced: Callable[[int], str | None] | None = None,
    ) -> None:
        if point.gate != getattr(params, "gate_kind", "domain"):
            raise ValueError(
                f"the operating point's gate is {point.gate!r} but the fitted parameters hold a "
                f"{getattr(params, 'gate_kind', 'domain')!r} gate"
            )
        if rows is not None:
            for i, rp in enumerate(rows):
                if rp is not None and (rp.layer, rp.site, rp.direction, rp.beta, rp.gate) != (
                    point.layer,
                    point.site,
                    point.direction,
                    point.beta,
                    point.gate,
                ):
                    raise ValueError(
                        f"row {i}'s operating point reads/pushes elsewhere ({rp.layer}, {rp.site}, {rp.direction}, "
                        f"beta {rp.beta}) than the batch's ({point.layer}, {point.site}, {point.direction}, "
                        f"beta {point.beta}): one hook serves the batch"
                    )
        super().__init__(
            lm,
            params,
            strength=point.strength,
            tau=point.tau,
            beta=point.beta,
            site=point.site,
            mode=ablation,
            labels=labels,
            seed=seed,
            direction=point.direction,
            push_open=point.pushes_open,
            push_close=point.pushes_close,
        )
        self.point = point
        self.row_points = None if rows is None else list(rows)
        self.forced = forced or (lambda i: None)
        self.offered = offered or (lambda i: None)

        def point_of(i: int) -> OperatingPoint | None:
            return point if self.row_points is None else self.row_points[i]

        self.point_of = point_of

        def opens(i: int) -> bool:
            if self.forced(i) is not None:
                return True
            rp = point_of(i)
            return rp is not None and rp.prefills and self.gate_of.get(i, 0) > 0

        def closes(i: int) -> bool:
            rp = point_of(i)
            return (
                self.forced(i) is None
                and rp is not None
                and rp.forbids_on_close
                and self.gate_of.get(i, 0) < 0
            )

        def constrained(i: int) -> bool:
            rp = point_of(i)
            if self.forced(i) is not None:
                return True
            return rp is not None and rp.constrain != "none"

        def tool_of(i: int) -> str | None:
            name = self.forced(i)
            if name is not None:
                return None if name == ANY_TOOL else name
            rp = point_of(i)
            if rp is None or rp.constrain != "router" or i not in self.domain_of:
                return None
            routed = rp.domain_tools.get(params.domains[self.domain_of[i]])
            names = self.offered(i)
            return routed if names is None or routed in names else None

        grammar = format_spec(point.call_format).schema_constrained and (
            point.constrain != "none"
            or forced is not None
            or any(rp is not None and rp.constrain != "none" for rp in self.row_points or ())
        )
        self.logits_rule = call_rules(
            lm,
            point.call_format,
            opens=opens,
            closes=closes,
            tools=tools,
            tool_of=tool_of if grammar else None,
            constrained=constrained,
            string_pattern=point.string_pattern,
        )

    def coefficients(self, d: Decision, idx: list[int], ctrl: AsaController) -> torch.Tensor:
        """Per batch row: the push (gate * strength * norm where the row's point moves the state), recording the gate
        each row's own tau gives."""
        out = torch.zeros(len(idx))
        for j, i in enumerate(idx):
            rp = self.point_of(i)
            tau = self.point.tau if rp is None else rp.tau
            g = (
                int(d.gate[j])
                if tau == self.point.tau
                else int(ternary_gate(d.p_tool[j : j + 1].cpu(), tau)[0])
            )
            self.gate_of.setdefault(i, g)
            self.domain_of.setdefault(i, int(d.domain[j]))
            self.p_of.setdefault(i, float(d.p_tool[j]))
            if rp is None or self.forced(i) is not None:
                continue
            moves = (g > 0 and rp.pushes_open) or (g < 0 and rp.pushes_close)
            if moves:
                out[j] = g * rp.strength * self.params.mean_norm
        return out


def _reader(seen: dict[int, torch.Tensor], layer: int) -> Callable:
    """A controller that only reads: it keeps each row's last-prompt-token state at ``layer`` and adds nothing."""

    def read(h_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen[layer] = h_last.detach().float()
        return torch.zeros(h_last.shape[0]), torch.zeros(h_last.shape[1])

    return read


def call_rules(
    lm: LoadedModel,
    call_format: str,
    *,
    opens: Callable[[int], bool] | None = None,
    closes: Callable[[int], bool] | None = None,
    tools: Sequence[dict] | Callable[[int], Sequence[dict]] = (),
    tool_of: Callable[[int], str | None] | None = None,
    constrained: Callable[[int], bool] | None = None,
    string_pattern: str | None = None,
) -> object:
    """One logits rule: rows where ``opens(i)`` start with the call marker, rows where ``closes(i)`` cannot, and
    (with ``tool_of``) a call after the marker decoded under its tool's schema (only on rows where
    ``constrained(i)``, when given; ``tool_of(i)`` None: any of the row's tools)."""
    marker = format_spec(call_format).marker
    tok = lm.tokenizer
    rules = []
    if opens is not None:
        ids = tok(marker, add_special_tokens=False)["input_ids"]
        rules.append(ForcedPrefix(lambda i: ids if opens(i) else None))
    if closes is not None:
        rules.append(BannedStart(tok, marker, closes))
    if tool_of is not None:
        from .calls import CallGrammar

        rules.append(
            CallGrammar(
                tok,
                _vocab_size(lm),
                tools,
                tool_of,
                call_format,
                string_pattern=string_pattern,
                applies=constrained,
            )
        )
    return compose(rules)


def _vocab_size(lm: LoadedModel) -> int:
    cfg = getattr(lm.model, "config", None)
    size = getattr(cfg, "vocab_size", None) or getattr(getattr(cfg, "text_config", None), "vocab_size", None)
    return int(size or len(lm.tokenizer))
