"""The one intervention primitive: add coef * vector at (layer, site) under a position policy."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch

from ..base import UserError
from ..models import LoadedModel, base_model, hook_site
from ..models.phase import (
    CONTEXT,
    DECODE,
    MIXED,
    PROMPT,
    ForwardInfo,
    active_interventions,
    register,
    unregister,
)

POLICIES = ("prompt_last", "prompt_all", "generated", "all")
# controller(hidden at each row's last prompt token [B, d]) -> (coef [B], vectors [B, d] or [d])
Controller = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# the phases in which a policy can touch nothing, so its hook returns at once
_IDLE = {"prompt_last": (CONTEXT, DECODE), "prompt_all": (DECODE,), "generated": (PROMPT, CONTEXT), "all": ()}

_paused = 0


def active_handles(lm: LoadedModel | None = None) -> list[SteeringHandle]:
    """Steering handles currently active on ``lm`` (on any model when None)."""
    if lm is not None:
        return [h for h in active_interventions(lm) if isinstance(h, SteeringHandle)]
    return [h for h in SteeringHandle._live if h._active]


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Suspend every steering handle inside (e.g. to compare with the plain model without removing handles)."""
    global _paused
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1


def check_vector(vector: torch.Tensor, hidden_size: int, what: str = "steering vector") -> torch.Tensor:
    if not isinstance(vector, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(vector).__name__}")
    if vector.dim() not in (1, 2) or vector.shape[-1] != hidden_size:
        raise ValueError(
            f"{what} has shape {tuple(vector.shape)}; expected ({hidden_size},) or (batch, {hidden_size}) "
            f"for hidden size {hidden_size}"
        )
    if not torch.isfinite(vector).all():
        bad = (~torch.isfinite(vector)).sum().item()
        raise ValueError(f"{what} contains {bad} NaN/inf value(s)")
    return vector


def _check_coef(coef: float | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(coef, dtype=torch.float32).detach().cpu()
    if t.dim() > 1:
        raise ValueError(
            f"coef must be a number or a 1-D tensor of per-row coefficients, got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"coef contains NaN/inf: {t.tolist()}")
    return t


class SteeringHandle:
    """An active intervention; use as a context manager or call ``remove()``."""

    _live: list[SteeringHandle] = []

    def __init__(
        self,
        lm: LoadedModel,
        vector: torch.Tensor | None,
        layer: int,
        site: str = "block",
        coef: float | torch.Tensor = 1.0,
        policy: str = "prompt_last",
        controller: Controller | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise UserError(f"unknown position policy {policy!r}; valid: {', '.join(POLICIES)}")
        lm.arch.check_layer(layer)
        lm.arch.check_site(site)
        if vector is None and controller is None:
            raise ValueError("give a steering vector, a controller, or both")
        self.lm, self.layer, self.site, self.policy = lm, layer, site, policy
        self.vector = None if vector is None else check_vector(vector, lm.hidden_size)
        self.coef = _check_coef(coef)
        self.controller = controller
        self.last_decision: tuple[torch.Tensor, torch.Tensor] | None = None
        self.touched: list[torch.Tensor] = []  # masks of positions changed, when record=True
        self.record = False
        self.row_index: list[int] | None = None  # set by a decoder that dropped finished rows from the batch
        # set for one packed forward (``steerlab.models.packed``): the flat positions of this handle's rows' last
        # prompt tokens, the only positions it reads and changes then
        self.packed_at: torch.Tensor | None = None
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None  # coef, vector on the hidden's device
        self._state = register(lm, base_model(lm.model, lm.arch), self)
        self._hook = hook_site(lm.model, lm.arch, layer, site, self._apply)
        self._active = True
        SteeringHandle._live.append(self)

    @property
    def touches_context(self) -> bool:
        """Whether this handle may change prompt tokens before the last one (so they cannot be computed once)."""
        return self.policy in ("prompt_all", "all")

    @property
    def touches_decode(self) -> bool:
        """Whether this handle may change (or records) generated steps: then its rows decode under it alone."""
        return DECODE not in _IDLE[self.policy] or self.record

    @property
    def needs_whole_prompt(self) -> bool:
        """A controller that steers tokens before the last decides from the last one: the prompt must be one forward."""
        return self.controller is not None and self.touches_context

    def set_coef(self, coef: float | torch.Tensor) -> None:
        self.coef = _check_coef(coef)
        self._static = None

    def _decide(self, hidden: torch.Tensor, pos: ForwardInfo) -> None:
        """Run the controller on each row's last prompt token (taken whatever the policy touches)."""
        if not bool((pos.last_prompt >= 0).any()):
            return
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        self._decide_rows(hidden[rows, pos.last_prompt.clamp(min=0)])

    def _decide_rows(self, h_last: torch.Tensor) -> None:
        coef, vec = self.controller(h_last)
        coef = _check_coef(coef)
        vec = check_vector(vec, self.lm.hidden_size, "controller vector")
        self.last_decision = (coef, vec.detach())

    def _row_values(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bsz = hidden.shape[0]
        if self.controller is not None:
            if self.last_decision is None:
                raise RuntimeError(
                    "a controller-driven handle saw tokens before any prompt's last token (a controller decides "
                    "from the last prompt token, so it cannot steer a shared prefix or a generated step first)"
                )
            coef, vec = (x.to(hidden.device) for x in self.last_decision)
        else:
            if self._static is None or self._static[1].device != hidden.device:
                self._static = (self.coef.to(hidden.device), self.vector.to(hidden.device, torch.float32))
            coef, vec = self._static
        if self.row_index is not None and len(self.row_index) == bsz:
            idx = torch.as_tensor(self.row_index, device=hidden.device)
            coef = coef[idx] if coef.dim() == 1 and coef.shape[0] > bsz else coef
            vec = vec[idx] if vec.dim() == 2 and vec.shape[0] > bsz else vec
        if coef.dim() == 1 and coef.shape[0] != bsz:
            raise ValueError(f"{coef.shape[0]} per-row coefficients given for a batch of {bsz} rows")
        if vec.dim() == 2 and vec.shape[0] != bsz:
            raise ValueError(f"{vec.shape[0]} per-row vectors given for a batch of {bsz} rows")
        return coef, vec

    def _mask(self, pos: ForwardInfo) -> torch.Tensor | None:
        """Positions to change, or None for every position of the forward (padding included: it is never read)."""
        if self.policy == "prompt_last":
            mask = torch.zeros(pos.bsz, pos.seq, dtype=torch.bool, device=pos.valid.device)
            rows = torch.nonzero(pos.last_prompt >= 0).flatten()
            mask[rows, pos.last_prompt[rows]] = True
            return mask
        if self.policy == "prompt_all":
            return None if pos.phase in (PROMPT, CONTEXT) and not self.record else pos.prompt
        if self.policy == "generated":
            return None if pos.phase == DECODE and not self.record else pos.generated
        return None if not self.record else pos.valid

    def pack_at(self, at: torch.Tensor) -> None:
        """Act in a packed forward (``steerlab.models.packed``) at the flat positions ``at`` of this handle's rows'
        last prompt tokens, and nowhere else; only a ``prompt_last`` handle that records nothing can."""
        if self.policy != "prompt_last" or self.record:
            raise ValueError(
                f"a packed forward takes prompt_last handles that record nothing, not policy {self.policy!r}"
                f"{' (recording)' if self.record else ''}; prefill this group apart"
            )
        self.packed_at = at

    def _apply_packed(self, hidden: torch.Tensor) -> torch.Tensor:
        """A packed forward ([1, tokens, d]): this handle's rows are the last prompt tokens at ``packed_at``; it
        decides from them and changes them, as a ``prompt_last`` handle does in the rows' own prefill."""
        at = self.packed_at.to(hidden.device)
        h_last = hidden[0, at]
        if self.controller is not None:
            self._decide_rows(h_last)
        delta = _delta(*self._row_values(h_last))
        out = hidden.clone()
        out[0, at] = (h_last.to(torch.float32) + delta).to(hidden.dtype)
        return out

    def _apply(self, hidden: torch.Tensor) -> torch.Tensor | None:
        pos = self._state.current
        if not self._active or _paused:
            return None
        if self.packed_at is not None:
            return self._apply_packed(hidden)
        if pos is None:
            return None
        if self.controller is not None and pos.phase in (PROMPT, MIXED):
            self._decide(hidden, pos)
        if pos.phase in _IDLE[self.policy]:
            if self.record:
                self.touched.append(torch.zeros(pos.bsz, pos.seq, dtype=torch.bool))
            return None
        if (pos.bsz, pos.seq) != tuple(hidden.shape[:2]):
            raise RuntimeError(
                f"steering expected hidden states of shape {(pos.bsz, pos.seq)}+(d,), got "
                f"{tuple(hidden.shape)}; batch packing is not supported"
            )
        mask = self._mask(pos)
        if self.record:
            self.touched.append((mask if mask is not None else pos.valid).detach().cpu().clone())
        if mask is not None and not bool(mask.any()):
            return None
        delta = _delta(*self._row_values(hidden)).unsqueeze(1)  # [B or 1, 1, d]
        if mask is not None:
            delta = delta * mask.unsqueeze(-1)
        if hidden.dtype == torch.float32:
            return hidden + delta
        return (hidden.to(torch.float32) + delta).to(hidden.dtype)

    def remove(self) -> None:
        if self._active:
            self._hook.remove()
            unregister(self.lm, self)
            self._active = False
            SteeringHandle._live = [h for h in SteeringHandle._live if h is not self]

    def __enter__(self) -> SteeringHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _delta(coef: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """What each row adds: [B or 1, d] in float32 from per-row or shared coefficients and vectors."""
    delta = (coef.view(-1, 1) if coef.dim() == 1 else coef) * (vec if vec.dim() == 2 else vec.view(1, -1))
    return delta.to(torch.float32)


def steer(
    lm: LoadedModel,
    vector: torch.Tensor | None = None,
    layer: int = 0,
    site: str = "block",
    coef: float | torch.Tensor = 1.0,
    policy: str = "prompt_last",
    *,
    controller: Controller | None = None,
) -> SteeringHandle:
    """Add ``coef * vector`` at (layer, site) on the positions the policy names.

    ``coef`` may be a number or a per-row tensor; ``vector`` may be ``(d,)`` or per-row ``(B, d)``. A ``controller``
    reads each row's hidden state at its last prompt token (at this layer and site, before the addition) and returns
    per-row coefficients and vectors: a probe-gated steer (ASA) in one forward pass.

    Args:
        lm: the loaded model.
        vector: ``(d,)`` or per-row ``(B, d)``; may be None with a ``controller``.
        layer: the layer to steer at (the output of decoder block ``layer`` for site ``block``).
        site: ``block``, ``block_in``, ``attn``, ``mlp`` or ``mlp_in``.
        coef: the push's size (state it as strength times ``mean_norm`` of the states there), or one per row.
        policy: ``prompt_last`` (each row's last prompt token), ``prompt_all``, ``generated`` or ``all``.
        controller: per-row coefficients and vectors decided from each row's last prompt token.

    Returns:
        The active handle; ``remove()`` it or use it as a context manager.
    """
    return SteeringHandle(lm, vector, layer, site, coef, policy, controller)


def hidden_norm_units(strength: float, mean_norm: float) -> float:
    """Strengths are stated in units of the mean hidden-state norm: coef = strength * mean_norm (unit vector)."""
    if not math.isfinite(strength) or not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"strength ({strength}) must be finite and mean_norm ({mean_norm}) finite and > 0")
    return strength * mean_norm
