"""What the forward in flight is (prompt, context or generated tokens) and which interventions are active.

One ``ModelState`` per model, created when the first intervention (steering handle, splice) is registered and
dismantled with the last. Why explicit phases: a position's role cannot be read off a forward's shapes alone (a
one-token prompt suffix after a cached prefix looks like a generated token; a prompt re-fed without a cache looks
like a new prompt). So:

- steerlab's own generation, capture and scoring declare each forward with ``forward_phase``:
  ``prompt`` (prompt tokens including each row's last prompt token), ``context`` (prompt tokens before it: a shared
  prefix, or the context of a last-token sweep) or ``decode`` (generated tokens);
- a ``model.generate(...)`` call made while an intervention is active is recognised by a thin wrapper that records
  the prompt's width, so the phase is exact with the KV cache on or off;
- any other forward is a whole prompt, except a one-token step after a non-empty KV cache, which is a generated
  token (a hand-written decode loop). Nothing is carried from one call to the next.

Positions are computed lazily, once per forward, and only when an intervention asks: a decode step under a
``prompt_last`` handle costs no tensor work.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator

import torch
from torch import nn

from .hf_compat import forward_cache

PROMPT, CONTEXT, DECODE, MIXED = "prompt", "context", "decode", "mixed"
PHASES = (PROMPT, CONTEXT, DECODE)


def cache_length(pkv: object) -> int:
    """Tokens already held by a KV cache (0 for none)."""
    if pkv is None:
        return 0
    if hasattr(pkv, "get_seq_length"):
        try:
            return int(pkv.get_seq_length())
        except (TypeError, IndexError, AttributeError):
            return 0
    if isinstance(pkv, (tuple, list)) and pkv and isinstance(pkv[0], (tuple, list)) and pkv[0]:
        return int(pkv[0][0].shape[-2])
    return 0


class ForwardInfo:
    """The forward in flight: its phase and, on demand, per-position masks.

    ``valid`` [B, S]: real (unpadded) tokens; ``prompt`` [B, S]: prompt tokens; ``last_prompt`` [B]: the column of
    each row's last prompt token in this forward (-1 when it is not in it); ``absolute`` [B, S]: each position's index
    in its row's real sequence (a shared prefix kept once in the cache, ``offset`` tokens, counted in).
    """

    __slots__ = ("phase", "bsz", "seq", "past", "prompt_width", "offset", "_mask", "_device", "__dict__")

    def __init__(
        self,
        phase: str,
        bsz: int,
        seq: int,
        past: int,
        mask: torch.Tensor | None,
        device: torch.device,
        prompt_width: int | None = None,
        offset: int = 0,
    ) -> None:
        self.phase, self.bsz, self.seq, self.past = phase, bsz, seq, past
        self.prompt_width, self.offset = prompt_width, offset
        self._mask, self._device = mask, device

    @functools.cached_property
    def valid(self) -> torch.Tensor:
        m = self._mask
        if isinstance(m, torch.Tensor) and m.dim() == 2 and m.shape[0] == self.bsz and m.shape[1] >= self.seq:
            return m[:, -self.seq :].bool()
        return torch.ones(self.bsz, self.seq, dtype=torch.bool, device=self._device)

    @functools.cached_property
    def prompt(self) -> torch.Tensor:
        if self.phase in (PROMPT, CONTEXT):
            return self.valid
        if self.phase == DECODE:
            return torch.zeros_like(self.valid)
        cols = self.past + torch.arange(self.seq, device=self.valid.device)
        return self.valid & (cols < self.prompt_width).unsqueeze(0)

    @property
    def generated(self) -> torch.Tensor:
        return self.valid & ~self.prompt

    @functools.cached_property
    def last_prompt(self) -> torch.Tensor:
        if self.phase in (CONTEXT, DECODE):
            return torch.full((self.bsz,), -1, dtype=torch.long, device=self.valid.device)
        prompt = self.prompt
        pos = torch.arange(self.seq, device=prompt.device).expand(self.bsz, self.seq)
        last = torch.where(prompt, pos, torch.full_like(pos, -1)).max(dim=1).values
        return torch.where(prompt.any(dim=1), last, torch.full_like(last, -1))

    @functools.cached_property
    def absolute(self) -> torch.Tensor:
        m = self._mask
        if isinstance(m, torch.Tensor) and m.dim() == 2 and m.shape[0] == self.bsz and m.shape[1] >= self.seq:
            return (m.long().cumsum(dim=1) - 1)[:, -self.seq :] + self.offset
        return self.offset + self.past + self.valid.long().cumsum(dim=1) - 1


class ModelState:
    """The per-model hooks: a pre-hook on the module owning the decoder layers and a ``generate`` wrapper."""

    def __init__(self, model: nn.Module, base: nn.Module) -> None:
        self.interventions: list[object] = []
        self.forced: list[str] = []
        self.generate_width: int | None = None
        self.current: ForwardInfo | None = None
        self._model = weakref.ref(model)
        self._hook = base.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        self._wrapped = False
        if callable(getattr(model, "generate", None)) and "generate" not in vars(model):
            original = model.generate

            @functools.wraps(original)
            def generate(*args: object, **kwargs: object) -> object:
                return self._generate(original, *args, **kwargs)

            model.generate = generate
            self._wrapped = True

    def _generate(self, original: object, *args: object, **kwargs: object) -> object:
        ref = kwargs.get("input_ids", kwargs.get("inputs", args[0] if args else None))
        if ref is None:
            ref = kwargs.get("inputs_embeds")
        outer = self.generate_width
        self.generate_width = int(ref.shape[1]) if isinstance(ref, torch.Tensor) and ref.dim() >= 2 else None
        try:
            return original(*args, **kwargs)
        finally:
            self.generate_width = outer

    def _pre_hook(self, _mod: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args and isinstance(args[0], torch.Tensor) and args[0].dtype == torch.long:
            ids = args[0]
        ref = ids if ids is not None else kwargs.get("inputs_embeds")
        if ref is None:
            self.current = None
            return
        bsz, seq = int(ref.shape[0]), int(ref.shape[1])
        cache = forward_cache(kwargs)
        past = cache_length(cache)
        offset = int(
            getattr(cache, "shared_prefix_length", 0) or 0
        )  # a prefix kept once, outside the rows' mask
        width = None
        if self.forced:
            phase = self.forced[-1]
        elif self.generate_width is not None:
            width = self.generate_width
            if past >= width:
                phase = DECODE
            elif past + seq <= width:
                phase = PROMPT
            else:
                phase = MIXED  # a prompt re-fed with the tokens generated so far (no KV cache)
        elif past > 0 and seq == 1:
            phase = DECODE
        else:
            phase = PROMPT
        self.current = ForwardInfo(
            phase, bsz, seq, past, kwargs.get("attention_mask"), ref.device, width, offset
        )

    def close(self) -> None:
        self._hook.remove()
        model = self._model()
        if self._wrapped and model is not None and "generate" in vars(model):
            del model.generate
        self.current = None


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _key(lm: object) -> nn.Module:
    return getattr(lm, "model", lm)


def register(lm: object, base: nn.Module, item: object) -> ModelState:
    """Add an intervention on ``lm`` (a LoadedModel or an nn.Module); installs the hooks on the first one."""
    model = _key(lm)
    state = _STATES.get(model)
    if state is None:
        state = _STATES[model] = ModelState(model, base)
    state.interventions.append(item)
    return state


def unregister(lm: object, item: object) -> None:
    """Remove an intervention; the hooks go with the last one."""
    model = _key(lm)
    state = _STATES.get(model)
    if state is None:
        return
    state.interventions = [x for x in state.interventions if x is not item]
    if not state.interventions and not state.forced:
        state.close()
        del _STATES[model]


def active_interventions(lm: object) -> list[object]:
    state = _STATES.get(_key(lm))
    return list(state.interventions) if state is not None else []


def context_safe(lm: object) -> bool:
    """True when no active intervention changes tokens before each row's last prompt token, so a prefix or a context
    computed once (without them) is exact."""
    return not any(getattr(h, "touches_context", True) for h in active_interventions(lm))


@contextlib.contextmanager
def forward_phase(lm: object, phase: str) -> Iterator[None]:
    """Declare what every forward of ``lm`` inside is, for the interventions that act by position.

    Args:
        lm: the loaded model.
        phase: ``prompt`` (prompt tokens up to each row's last), ``context`` (prompt tokens before it: a shared
            prefix) or ``decode`` (generated tokens).

    Returns:
        A context manager; forwards inside it are taken to be of that phase.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    state = _STATES.get(_key(lm))
    if state is None:  # nothing is hooked: nobody needs to know
        yield
        return
    state.forced.append(phase)
    try:
        yield
    finally:
        state.forced.pop()
        if not state.interventions and not state.forced and _STATES.get(_key(lm)) is state:
            state.close()
            del _STATES[_key(lm)]


def current_forward(lm: object) -> ForwardInfo | None:
    state = _STATES.get(_key(lm))
    return state.current if state is not None else None
