"""The one intervention primitive: add coef * vector at (layer, site) under a position policy."""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator

import torch

from ..models import LoadedModel, base_model, hook_site
from .phase import ForwardPositions, PhaseTracker

POLICIES = ("prompt_last", "prompt_all", "generated", "all")
# controller(hidden at each row's last prompt token [B, d]) -> (coef [B], vectors [B, d] or [d])
Controller = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

_paused = 0
_registry: weakref.WeakSet = weakref.WeakSet()


def active_handles() -> list[SteeringHandle]:
    """Steering handles currently registered on any model."""
    return [h for h in _registry if h._active]


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Suspend every steering handle (e.g. while a shared prompt prefix is cached)."""
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
            raise ValueError(f"unknown position policy {policy!r}; valid: {', '.join(POLICIES)}")
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
        self._tracker = PhaseTracker(base_model(lm.model, lm.arch))
        self._hook = hook_site(lm.model, lm.arch, layer, site, self._apply)
        self._active = True
        _registry.add(self)

    def set_coef(self, coef: float | torch.Tensor) -> None:
        self.coef = _check_coef(coef)

    def _row_values(self, hidden: torch.Tensor, pos: ForwardPositions) -> tuple[torch.Tensor, torch.Tensor]:
        bsz = hidden.shape[0]
        if self.controller is not None and pos.prompt.any():
            rows = torch.arange(bsz, device=hidden.device)
            h_last = hidden[rows, pos.last_prompt.clamp(min=0)]
            coef, vec = self.controller(h_last)
            coef = _check_coef(coef)
            vec = check_vector(vec, self.lm.hidden_size, "controller vector")
            self.last_decision = (coef, vec.detach())
        elif self.controller is not None:
            if self.last_decision is None:
                raise RuntimeError("a controller-driven handle saw a generated step before any prompt")
            coef, vec = self.last_decision
        else:
            coef, vec = self.coef, self.vector
        if self.row_index is not None and len(self.row_index) == bsz:
            coef = coef[self.row_index] if coef.dim() == 1 and coef.shape[0] > bsz else coef
            vec = vec[self.row_index] if vec.dim() == 2 and vec.shape[0] > bsz else vec
        if coef.dim() == 1 and coef.shape[0] != bsz:
            raise ValueError(f"{coef.shape[0]} per-row coefficients given for a batch of {bsz} rows")
        if vec.dim() == 2 and vec.shape[0] != bsz:
            raise ValueError(f"{vec.shape[0]} per-row vectors given for a batch of {bsz} rows")
        return coef, vec

    def _mask(self, pos: ForwardPositions, shape: torch.Size) -> torch.Tensor:
        if self.policy == "prompt_last":
            mask = torch.zeros(shape, dtype=torch.bool, device=pos.valid.device)
            rows = torch.nonzero(pos.last_prompt >= 0).flatten()
            mask[rows, pos.last_prompt[rows]] = True
            return mask
        if self.policy == "prompt_all":
            return pos.prompt
        if self.policy == "generated":
            return pos.generated
        return pos.valid

    def _apply(self, hidden: torch.Tensor) -> torch.Tensor | None:
        pos = self._tracker.current
        if not self._active or _paused or pos is None:
            return None
        if tuple(pos.valid.shape) != tuple(hidden.shape[:2]):
            raise RuntimeError(
                f"steering expected hidden states of shape {tuple(pos.valid.shape)}+(d,), got "
                f"{tuple(hidden.shape)}; batch packing is not supported"
            )
        mask = self._mask(pos, hidden.shape[:2])
        if self.record:
            self.touched.append(mask.detach().cpu().clone())
        if not mask.any():
            return None
        coef, vec = self._row_values(hidden, pos)
        coef = coef.to(hidden.device, torch.float32)
        vec = vec.to(hidden.device, torch.float32)
        coef_b = coef.view(-1, 1, 1) if coef.dim() == 1 else coef.view(1, 1, 1)
        vec_b = vec.view(vec.shape[0], 1, -1) if vec.dim() == 2 else vec.view(1, 1, -1)
        delta = (coef_b * vec_b) * mask.unsqueeze(-1).to(torch.float32)
        return (hidden.to(torch.float32) + delta).to(hidden.dtype)

    def remove(self) -> None:
        if self._active:
            self._hook.remove()
            self._tracker.remove()
            self._active = False

    def __enter__(self) -> SteeringHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


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
    """
    return SteeringHandle(lm, vector, layer, site, coef, policy, controller)


def hidden_norm_units(alpha: float, mean_norm: float) -> float:
    """Strengths are stated in units of the mean hidden-state norm: coef = alpha * mean_norm (vector unit-norm)."""
    if not math.isfinite(alpha) or not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"alpha ({alpha}) must be finite and mean_norm ({mean_norm}) finite and > 0")
    return alpha * mean_norm
