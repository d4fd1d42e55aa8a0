"""Gate data with the tool list in the context: each request rendered with a tool set, labelled by whether it needs
one of the tools *offered* (not whether it needs some tool somewhere).

Why: a gate fitted on one fixed tool list learns "this is a math/code/search/translation request", which says nothing
about a request to an agent with other tools (BFCL's items each offer their own functions). Seeing the same request
with and without a tool that serves it forces a probe to read the relation between the request and the offered tools.

Sources (each a list of ``ContextExample``; ``group`` names the underlying request, so no request is split between
fitting and selection):

- ``varied_contexts``: the run's own examples, each with a random subset of the run's tools. Its domain's tool is
  offered with probability 1/2 (always for a conversation, whose earlier turns call it); a tool prompt whose tool is
  left out is a negative (the tools offered cannot serve it). Other offered tools: 0-2 of the run's other tools and
  0-1 unrelated functions from ``pool`` (BFCL fit-category functions), so the list varies in length and wording.
- ``bfcl_contexts``: BFCL items of fit-only categories (``steerlab.data.bfcl.FIT_CATEGORIES``), each with its own
  functions (positive) and with another item's functions that share no content word with the request or its own
  functions (negative: the same request, functions that cannot serve it).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..tools import tool_spec

__all__ = ["GATE_DATA", "ContextExample", "bfcl_contexts", "content_words", "split_of", "varied_contexts"]

GATE_DATA = ("varied", "bfcl")  # sources of gate data with the tool list in the context
_STOP = set(
    """a an the and or of to in on for with by from at as is are be this that these those it its into over under
    about given provide provided specific specified using use used based default value values which when what where
    who will can should must may optional required number string list dict type name names data information details
    each other than then also more most some such only returns return retrieve retrieves get gets find finds
    calculate calculates compute computes function functions parameter parameters""".split()
)


@dataclass(frozen=True)
class ContextExample:
    """A request, the tools offered with it, and whether its next reply should call one of them."""

    id: str
    conversation: str | tuple = ""  # a user prompt, or a conversation (tuple of OpenAI messages)
    tools: tuple = ()  # OpenAI-style tool dicts offered in this rendering
    label: int = 0  # 1: one of the offered tools is needed now
    source: str = ""  # e.g. "asa:cal:math" or "bfcl:parallel"
    kind: str = ""  # own | without_tool | mismatched | distractors
    group: str = ""  # the underlying request (fit/selection splits never divide a group)
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def messages(self) -> str | list[dict]:
        return list(self.conversation) if isinstance(self.conversation, tuple) else self.conversation


def content_words(text: str) -> set[str]:
    """Lower-case content words of 4+ letters, camelCase / snake_case / dotted names split."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return {w for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in _STOP}


def _tool_words(tools: Sequence[dict]) -> set[str]:
    out: set[str] = set()
    for t in tools:
        fn = tool_spec(t)
        out |= content_words(fn["name"] + " " + str(fn.get("description", "")))
    return out


def _request_text(conversation: str | Sequence[dict]) -> str:
    if isinstance(conversation, str):
        return conversation
    return " ".join(str(m.get("content") or "") for m in conversation if m.get("role") == "user")


def split_of(group: str, valid_share: float, seed: int = 0) -> str:
    """``fit`` or ``valid`` for a request group, from a hash (stable whatever else is in the data)."""
    h = int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "valid" if h < valid_share else "fit"


def bfcl_contexts(items: Sequence[object], seed: int = 0) -> list[ContextExample]:
    """Per BFCL item (fit-only categories): its request with its own functions (1) and with the functions of another
    item (of the same category when one qualifies, so the style of the functions does not give the label away) that
    share no content word with the request or its own functions and no function name (0)."""
    from ..data.bfcl import FIT_CATEGORIES

    bad = sorted({it.category for it in items} - set(FIT_CATEGORIES))
    if bad:
        raise ValueError(
            f"BFCL categories {bad} are evaluated and must never be fitted on; fit-only: {', '.join(FIT_CATEGORIES)}"
        )
    rng = random.Random(seed)
    words = [_tool_words(it.functions) for it in items]
    asks = [content_words(_request_text(it.messages)) for it in items]
    out = []
    for i, it in enumerate(items):
        conv = tuple(it.messages)
        out.append(
            ContextExample(f"{it.id}:own", conv, tuple(it.functions), 1, f"bfcl:{it.category}", "own", it.id)
        )
        mine = words[i] | asks[i]
        names = {tool_spec(f)["name"] for f in it.functions}
        pool = [
            j
            for j in range(len(items))
            if j != i
            and not (words[j] & mine)
            and not names & {tool_spec(f)["name"] for f in items[j].functions}
        ]
        same = [j for j in pool if items[j].category == it.category]  # same style of functions, when possible
        if not pool:
            continue
        j = rng.choice(same or pool)
        out.append(
            ContextExample(
                f"{it.id}:with:{items[j].id}",
                conv,
                tuple(items[j].functions),
                0,
                f"bfcl:{it.category}",
                "mismatched",
                it.id,
                {"functions_of": items[j].id},
            )
        )
    return out


def varied_contexts(
    examples: Sequence[object],
    tools: Sequence[dict],
    domain_tool: dict[str, str],
    pool: Sequence[Sequence[dict]] = (),
    seed: int = 0,
    source: str = "asa",
) -> list[ContextExample]:
    """Each example once, with a random tool set: with probability 1/2 (always for a conversation) its own tool,
    0-2 of the run's other tools and, half the time, one function list from ``pool`` sharing no content word with the
    request (label: the example's own); otherwise such a pool list alone, or 1-2 of the run's other tools when the
    pool has none (label 0: nothing offered serves the request)."""
    by_name = {tool_spec(t)["name"]: t for t in tools}
    unknown = sorted({domain_tool[d] for d in domain_tool} - set(by_name))
    if unknown:
        raise ValueError(f"domain tools {unknown} are not among the tools {sorted(by_name)}")
    pool_words = [_tool_words(p) for p in pool]
    rng = random.Random(seed)
    out = []
    for e in examples:
        own = domain_tool[e.domain]
        conversation = e.conversation
        is_conv = not isinstance(conversation, str)
        keep_own = is_conv or rng.random() < 0.5
        ask = content_words(_request_text(conversation))
        unrelated = [k for k in range(len(pool)) if not pool_words[k] & ask]
        others = [by_name[n] for n in by_name if n != own]
        if keep_own:
            chosen = [by_name[own], *rng.sample(others, rng.randint(0, min(2, len(others))))]
            if unrelated and rng.random() < 0.5:
                chosen += list(pool[rng.choice(unrelated)])
        elif (
            unrelated
        ):  # functions unrelated to the request (a run tool might serve it: python for arithmetic)
            chosen = list(pool[rng.choice(unrelated)])
        elif others:
            chosen = rng.sample(others, rng.randint(1, min(2, len(others))))
        else:
            continue
        seen: set[str] = set()
        chosen = [t for t in chosen if not (tool_spec(t)["name"] in seen or seen.add(tool_spec(t)["name"]))]
        rng.shuffle(chosen)
        label = e.label if keep_own else 0
        kind = "own" if keep_own else "without_tool"
        conv = tuple(conversation) if is_conv else conversation
        out.append(
            ContextExample(
                f"{e.id}:ctx",
                conv,
                tuple(chosen),
                label,
                f"{source}:{e.split}:{e.domain}",
                kind,
                e.id,
                {"domain": e.domain, "original_label": e.label},
            )
        )
    return out
