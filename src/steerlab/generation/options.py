"""How to decode, as one value: ``generate`` and ``generate_conditions`` read the same options object, so a caller
builds it once (``GenerateOptions(max_new_tokens=..., stop=...)``) and varies it with ``replace``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .decode import StopFn, TokenFn
    from .prefix_store import PrefixStore
    from .rules import LogitsRule


@dataclass(frozen=True)
class GenerateOptions:
    """Options of ``generate`` and ``generate_conditions`` (the second decodes greedily: the sampling and
    streaming fields below the line must keep their defaults there).

    Attributes:
        max_new_tokens: tokens to decode, one value or one per prompt.
        batch_size: prompts per forward pass (results do not depend on it).
        batch_tokens: also cap a batch at this many padded tokens, rows x (longest prompt after the shared prefix +
            max_new_tokens): long prompts in smaller batches (memory), short ones up to ``batch_size`` (None: no cap).
        chat: wrap prompts in the chat template (None: when the tokenizer has one).
        tools: tool schemas handed to the chat template.
        system: a system message put before each prompt.
        stop: ``stop(text_so_far)`` ends a row early.
        shared_prefix: compute the prompts' common head once: ``"auto"``, True or False.
        min_shared: the fewest shared tokens worth computing once.
        progress: show a progress bar.
        desc: the progress bar's label.
        logits_rule: shapes each row's next-token scores (see ``steerlab.generation.rules``).
        ignore_eos: decode the end-of-sequence token like any other (fixed-length runs).
        merge_conditions: ``generate_conditions`` only: the rows of every batch and condition whose interventions
            leave decoding alone (prompt-token steering, logits rules) decode in one running batch that each batch x
            condition joins once its last prompt token is computed, up to two batches' rows and ``batch_tokens``
            cache slots (``DecodePool``); False: each batch x condition decodes to its end.
        temperature: 0 for greedy; one value or one per prompt.
        top_p: nucleus sampling mass; one value or one per prompt.
        seed: a row's sample depends only on its own seed; one value or one per prompt.
        on_token: ``on_token(i, token_id, text_delta)`` for every new token of prompt ``i``.
        shared_head: token ids every prompt starts with, whose KV cache ``prefix_store`` keeps across calls.
        prefix_store: where the shared head's KV cache is kept.
        cancelled: ``cancelled(i)`` ends prompt ``i``'s row at the next step.
    """

    max_new_tokens: int | Sequence[int] = 64
    batch_size: int = 8
    batch_tokens: int | None = None
    chat: bool | None = None
    tools: list[dict] | None = None
    system: str | None = None
    stop: StopFn | None = None
    shared_prefix: bool | str = "auto"
    min_shared: int = 16
    progress: bool = True
    desc: str = "generate"
    logits_rule: LogitsRule | None = None
    ignore_eos: bool = False
    merge_conditions: bool = True
    # ---- generate only (generate_conditions decodes greedily, every condition from the same context)
    temperature: float | Sequence[float] = 0.0
    top_p: float | Sequence[float] = 1.0
    seed: int | Sequence[int | None] | None = None
    on_token: TokenFn | None = None
    shared_head: Sequence[int] | None = None
    prefix_store: PrefixStore | None = None
    cancelled: Callable[[int], bool] | None = None

    def replace(self, **changes: Any) -> GenerateOptions:
        """A copy with ``changes``; an unknown name is a TypeError listing the valid ones."""
        unknown = sorted(set(changes) - set(NAMES))
        if unknown:
            raise TypeError(f"unknown generation option(s) {unknown}; valid: {', '.join(NAMES)}")
        return dataclasses.replace(self, **changes) if changes else self

    def greedy_only(self, where: str) -> None:
        """Refuse the fields ``where`` (a greedy, several-condition decoder) cannot honour, naming them."""
        bad = [name for name in GENERATE_ONLY if _differs(getattr(self, name), _DEFAULTS[name])]
        if bad:
            raise ValueError(
                f"{where} decodes greedily, every condition from one context: it does not take "
                f"{', '.join(bad)} (use generate, one call per condition)"
            )


def _differs(value: Any, default: Any) -> bool:
    try:
        return bool(value != default)
    except (TypeError, ValueError):  # an array compared element-wise: given, so not the default
        return True


def resolve(options: GenerateOptions | None, changes: dict[str, Any]) -> GenerateOptions:
    """``options`` (default: ``GenerateOptions()``) with keyword arguments given the old way on top."""
    return (options if options is not None else GenerateOptions()).replace(**changes)


NAMES = tuple(f.name for f in dataclasses.fields(GenerateOptions))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GenerateOptions)}
GENERATE_ONLY = ("temperature", "top_p", "seed", "on_token", "shared_head", "prefix_store", "cancelled")
