"""ASA's operating point: everything that decides what a prompt gets, in one frozen object.

Why one object: the evaluate stage, the asset, ``AsaSteerer``, ``steerlab serve``, the UI, ``asa demo/chat`` and
the BFCL evaluation must all act the same way on the same prompt. Each builds its ``GatedAction`` from an
``OperatingPoint`` (``point.bind(...)``); per-request changes (another strength or tau, ASA off) are
``point.replace(...)``; the asset's manifest holds ``point.to_manifest()`` and ``OperatingPoint.from_manifest``
reads it back (refusing what it does not know instead of filling in a default).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..config import UserError
from ..models.registry import SITES
from ..tools.formats import TOOL_CALL_FORMATS, TRIGGER_MODES, schema_constrained_formats
from .gate import check_tau
from .gates import GATES

ACTIONS = ("steer", "prefill", "steer+prefill")
ON_CLOSE = ("forbid", "push", "none")
CONSTRAIN = ("none", "router", "model")

# manifest key -> field name (the manifest keeps its historical names)
_MANIFEST_NAMES = {"tool_call_format": "call_format"}
# fields a manifest written before the operating point existed may lack, with the value those assets meant
_LEGACY_DEFAULTS = {
    "action": "steer",
    "on_close": "push",
    "constrain": "none",
    "string_pattern": None,
    "gate": "domain",
}


@dataclass(frozen=True)
class OperatingPoint:
    """Where and how ASA acts.

    ``layer``/``site``: where the gate reads and the push is added; ``direction``: the direction kind (``asa``,
    ``global``, ``grad``, ``behav``); ``strength``: push size in units of the mean hidden norm (the gate gives the
    sign; a negative strength pushes the other way); ``tau``: the gate
    threshold; ``beta``: weight of the global vector in ``asa``'s direction; ``action``: what an open gate does
    (``steer`` pushes, ``prefill`` starts the reply with the call marker, or both); ``on_close``: what a closed gate
    does (``forbid`` the marker, ``push`` the other way, ``none``); ``constrain``: the call after the marker is
    decoded under its tool's schema (``router``: the routed domain's tool; ``model``: any offered tool) or not
    (``none``); ``domain_tools``: the tool each domain calls; ``string_pattern``: regex for string arguments of a
    constrained call; ``trigger_mode``: what counts as a call (``prefix``: the reply starts with the marker);
    ``call_format``: the call syntax; ``gate``: what gives p(tool) (``domain``: the router and per-domain probes;
    ``shared``: one probe at ``layer``; ``all_layers``: one probe on layers 0..``layer``; see ``asa.gates``).
    """

    layer: int
    strength: float
    tau: float
    site: str = "block"
    direction: str = "asa"
    beta: float = 0.0
    action: str = "steer"
    on_close: str = "forbid"
    constrain: str = "none"
    domain_tools: Mapping[str, str | None] = field(default_factory=dict)
    string_pattern: str | None = None
    trigger_mode: str = "prefix"
    call_format: str = "tool_call_json"
    gate: str = "domain"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("action", ACTIONS),
            ("on_close", ON_CLOSE),
            ("constrain", CONSTRAIN),
            ("site", SITES),
            ("trigger_mode", TRIGGER_MODES),
            ("call_format", TOOL_CALL_FORMATS),
            ("gate", GATES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise UserError(f"{name}={value!r} is not allowed; valid: {', '.join(allowed)}")
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 0:
            raise UserError(f"layer must be a layer number >= 0, got {self.layer!r}")
        if not (isinstance(self.strength, (int, float)) and math.isfinite(self.strength)):
            raise UserError(f"strength must be a finite number, got {self.strength!r}")
        check_tau(self.tau)
        if not math.isfinite(self.beta):
            raise UserError(f"beta must be finite, got {self.beta!r}")
        if self.constrain != "none" and self.call_format not in schema_constrained_formats():
            raise UserError(
                f"constrain={self.constrain!r} needs a call_format with a JSON body "
                f"({', '.join(schema_constrained_formats())}), got {self.call_format!r}"
            )
        object.__setattr__(self, "domain_tools", dict(self.domain_tools))

    # ------------------------------------------------------------------ what it does

    @property
    def prefills(self) -> bool:
        """An open gate starts the reply with the call marker."""
        return "prefill" in self.action

    @property
    def pushes_open(self) -> bool:
        return "steer" in self.action

    @property
    def pushes_close(self) -> bool:
        return self.on_close == "push" and "steer" in self.action

    @property
    def forbids_on_close(self) -> bool:
        return self.on_close == "forbid"

    def replace(self, **changes: object) -> OperatingPoint:
        """A copy with some fields changed (checked like the original); ``None`` values keep the field."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise UserError(
                f"unknown operating-point field(s) {unknown}; valid: {', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    # ------------------------------------------------------------------ manifest

    def to_manifest(self) -> dict:
        out = {}
        back = {v: k for k, v in _MANIFEST_NAMES.items()}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[back.get(f.name, f.name)] = dict(value) if isinstance(value, Mapping) else value
        return out

    @classmethod
    def from_manifest(cls, manifest: Mapping) -> OperatingPoint:
        """The point an asset's manifest describes. A field missing from an asset written before it existed takes
        the value those assets were used with (``on_close='push'``: the paper's ±push); a required one missing is
        an error naming it."""
        kw: dict = {}
        missing = []
        for f in dataclasses.fields(cls):
            key = next((k for k, v in _MANIFEST_NAMES.items() if v == f.name), f.name)
            if key in manifest:
                kw[f.name] = manifest[key]
            elif f.name in _LEGACY_DEFAULTS:
                kw[f.name] = _LEGACY_DEFAULTS[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                missing.append(key)
        if missing:
            raise UserError(f"the manifest has no {', '.join(missing)}: not an ASA operating point")
        if kw.get("domain_tools") is None:
            kw["domain_tools"] = {}
        return cls(**kw)

    # ------------------------------------------------------------------ acting

    def bind(
        self,
        lm: object,
        params: object,
        tools: Sequence[dict] | object = (),
        *,
        ablation: str = "full",
        labels: Sequence[int] | None = None,
        seed: int = 0,
        rows: Sequence[OperatingPoint | None] | None = None,
        offered: object = None,
        forced: object = None,
    ) -> object:
        """This point acting on batches of ``lm``: a ``GatedAction`` (a row setup for ``generate``).

        ``tools``: the tool list (or a per-prompt function) a constrained call is decoded under; ``ablation``: ASA
        itself (``full``) or one of its controls (``steerlab.asa.controller.MODES``); ``rows`` (per
        prompt): another point for that prompt (same layer, site, direction and beta; other strength, tau, action,
        on_close, constrain) or None for no ASA on it; ``offered`` (per prompt, a function -> set of names or None):
        the tools the request offers, so a routed tool it does not offer falls back to any offered one; ``forced``
        (per prompt, a function -> tool name or None): a call the request forces (``tool_choice``).
        """
        from .apply import GatedAction

        return GatedAction(
            lm,
            params,
            self,
            tools=tools,
            ablation=ablation,
            labels=labels,
            seed=seed,
            rows=rows,
            offered=offered,
            forced=forced,
        )
