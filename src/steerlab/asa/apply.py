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

from collections.abc import Callable, Sequence

import torch

from ..generation.rules import BannedStart, ForcedPrefix, compose
from ..models import LoadedModel
from ..steering import SteeringHandle, steer
from ..tools import format_spec
from .controller import AsaController, AsaParams

ACTIONS = ("steer", "prefill", "steer+prefill")
ON_CLOSE = ("forbid", "push", "none")
CONSTRAIN = ("none", "router", "model")


class GatedSteering:
    """A row setup (``generate(..., row_setup=...)``): each batch gets its own controller at the last prompt token.

    ``labels`` (per prompt) feed the oracle gate; ``row_strength`` (per prompt) overrides the strength row by row,
    0 leaving a row unsteered. ``decisions()`` gives each prompt's routed domain, p(tool) and gate.
    """

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
        self.batches: list[tuple[list[int], AsaController]] = []
        self.gate_of: dict[int, int] = {}  # prompt index -> the gate its first forward decided
        self.domain_of: dict[int, int] = {}

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

    def __call__(self, idx: list[int]) -> SteeringHandle:
        ctrl = self.controller(idx)
        self.batches.append((list(idx), ctrl))
        batch = list(idx)

        def decide_and_record(h_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            coef, vec = ctrl(h_last)
            d = ctrl.decisions[-1]
            for j, i in enumerate(batch):
                self.gate_of.setdefault(i, int(d.gate[j]))
                self.domain_of.setdefault(i, int(d.domain[j]))
            return coef, vec

        return steer(
            self.lm,
            None,
            layer=self.params.layer,
            site=self.site,
            policy="prompt_last",
            controller=decide_and_record,
        )

    def decisions(self, n: int) -> dict[str, torch.Tensor]:
        """Per prompt (in prompt order): ``domain`` index, ``p_tool`` and ``gate`` of the first forward that saw it."""
        out = {
            "domain": torch.full((n,), -1),
            "p_tool": torch.full((n,), float("nan")),
            "gate": torch.zeros(n),
        }
        for idx, ctrl in self.batches:
            if not ctrl.decisions:
                continue
            d = ctrl.decisions[0]
            out["domain"][idx] = d.domain.cpu()
            out["p_tool"][idx] = d.p_tool.cpu().float()
            out["gate"][idx] = d.gate.cpu().float()
        return out


class GatedAction(GatedSteering):
    """ASA's gate with an action (see the module docstring); a row setup that carries its own ``logits_rule``."""

    def __init__(
        self,
        lm: LoadedModel,
        params: AsaParams,
        *,
        strength: float,
        tau: float,
        beta: float = 0.0,
        site: str = "block",
        action: str = "steer",
        on_close: str = "forbid",
        constrain: str = "none",
        direction: str = "asa",
        call_format: str = "tool_call_json",
        tools: Sequence[dict] = (),
        domain_tools: dict[str, str] | None = None,
        string_pattern: str | None = None,
        mode: str = "full",
        labels: Sequence[int] | None = None,
        row_strength: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        for name, value, allowed in (
            ("action", action, ACTIONS),
            ("on_close", on_close, ON_CLOSE),
            ("constrain", constrain, CONSTRAIN),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not allowed; valid: {', '.join(allowed)}")
        super().__init__(
            lm,
            params,
            strength=strength,
            tau=tau,
            beta=beta,
            site=site,
            mode=mode,
            labels=labels,
            row_strength=row_strength,
            seed=seed,
            direction=direction,
            push_open="steer" in action,
            push_close=on_close == "push" and "steer" in action,
        )
        self.action, self.on_close, self.constrain = action, on_close, constrain
        by_domain = domain_tools or {}

        def tool_of(i: int) -> str | None:
            if constrain == "model" or i not in self.domain_of:
                return None
            return by_domain.get(params.domains[self.domain_of[i]])

        self.logits_rule = call_rules(
            lm,
            call_format,
            opens=(lambda i: self.gate_of.get(i, 0) > 0) if "prefill" in action else None,
            closes=(lambda i: self.gate_of.get(i, 0) < 0) if on_close == "forbid" else None,
            tools=tools,
            tool_of=tool_of if constrain != "none" else None,
            string_pattern=string_pattern,
        )


def call_rules(
    lm: LoadedModel,
    call_format: str,
    *,
    opens: Callable[[int], bool] | None = None,
    closes: Callable[[int], bool] | None = None,
    tools: Sequence[dict] | Callable[[int], Sequence[dict]] = (),
    tool_of: Callable[[int], str | None] | None = None,
    string_pattern: str | None = None,
) -> object:
    """One logits rule: rows where ``opens(i)`` start with the call marker, rows where ``closes(i)`` cannot, and
    (with ``tool_of``) a call after the marker decoded under its tool's schema."""
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
            CallGrammar(tok, _vocab_size(lm), tools, tool_of, call_format, string_pattern=string_pattern)
        )
    return compose(rules)


def _vocab_size(lm: LoadedModel) -> int:
    cfg = getattr(lm.model, "config", None)
    size = getattr(cfg, "vocab_size", None) or getattr(getattr(cfg, "text_config", None), "vocab_size", None)
    return int(size or len(lm.tokenizer))
