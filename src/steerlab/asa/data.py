"""ASA examples and tools for a run: the shipped dataset or a user's JSONL (optionally reduced per cell), checked
before any model is loaded."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from ..config import UserError, read_user_text
from ..data.asa_data import ASA_SPLITS as SPLITS
from ..data.asa_data import AsaExample as Example
from ..data.asa_data import load_asa_split, load_asa_tools, load_jsonl_examples
from ..tools import tool_spec

DOMAIN_TOOL = {
    "math": "calculator",
    "code": "python_interpreter",
    "search": "web_search",
    "translation": "translator",
}
# what each split is for: both labels are needed in every domain where a direction or a probe is fitted
NEEDS_BOTH_LABELS = {"cal": "the direction (tool - non-tool mean)", "train": "the probe"}
__all__ = ["DOMAIN_TOOL", "SPLITS", "Example", "load_examples", "load_tools"]


def _reduce(examples: list[Example], limit: int | None, fraction: float = 1.0) -> list[Example]:
    """Keep the first ``fraction`` (rounded up) of each (domain, label, kind) cell, at most ``limit``, in file order
    (deterministic, balanced; single prompts and conversations both survive)."""
    if limit is None and fraction >= 1.0:
        return examples
    size: dict[tuple[str, int, str], int] = defaultdict(int)
    for e in examples:
        size[(e.domain, e.label, e.kind)] += 1
    keep = {k: min(math.ceil(n * fraction), limit if limit is not None else n) for k, n in size.items()}
    seen: dict[tuple[str, int, str], int] = defaultdict(int)
    out = []
    for e in examples:
        cell = (e.domain, e.label, e.kind)
        if seen[cell] < keep[cell]:
            seen[cell] += 1
            out.append(e)
    return out


def load_examples(
    source: str = "builtin",
    limit_per_cell: int | None = None,
    conversations: bool = True,
    fraction: float = 1.0,
) -> dict[str, list[Example]]:
    """Examples per split from the shipped dataset, or from a JSONL with prompt (or messages), domain, label,
    split; ``conversations=False`` leaves conversations out (single prompts only); ``fraction`` keeps that share of
    every split x domain x label x kind cell. Every split needs both labels, and CAL and TRAIN need both labels in
    every domain."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"data fraction must be in (0, 1], got {fraction!r}")
    if source == "builtin":
        raw = {s: load_asa_split(s, conversations) for s in SPLITS}
    else:
        if not Path(source).is_file():
            raise UserError(f"ASA data {source!r} is neither 'builtin' nor an existing JSONL file")
        rows = load_jsonl_examples(source)
        missing = [e.id for e in rows if not e.split]
        if missing:
            raise UserError(
                f"{source}: every line needs a split ({', '.join(SPLITS)}); missing for {missing[:3]}"
            )
        raw = {s: [e for e in rows if e.split == s and (conversations or e.kind == "single")] for s in SPLITS}
    out = {s: _reduce(v, limit_per_cell, fraction) for s, v in raw.items()}
    for s, v in out.items():
        labels = {e.label for e in v}
        if labels != {0, 1}:
            raise UserError(
                f"ASA data {source!r}: split {s!r} needs both tool (1) and non-tool (0) prompts; it has labels "
                f"{sorted(labels) or 'none (the split is empty)'}"
            )
    for s, why in NEEDS_BOTH_LABELS.items():
        domains = sorted({e.domain for v in out.values() for e in v})
        for d in domains:
            have = {e.label for e in out[s] if e.domain == d}
            if have != {0, 1}:
                lack = "tool (1)" if 1 not in have else "non-tool (0)"
                raise UserError(
                    f"ASA data {source!r}: domain {d!r} has no {lack} prompts in split {s!r}, which fits {why} "
                    f"of every domain"
                )
    return out


def load_tools(source: str = "builtin") -> tuple[list[dict], dict[str, str]]:
    """The tools listed in the prompt and each domain's tool: the shipped four, or a JSON list of OpenAI-style
    tools where each tool names the domain it serves (``"domain": "math"``)."""
    if source == "builtin":
        return load_asa_tools(), dict(DOMAIN_TOOL)
    p = Path(source)
    if not p.is_file():
        raise UserError(f"tools {source!r} is neither 'builtin' nor an existing JSON file")
    try:
        tools = json.loads(read_user_text(p, "a JSON list of tools"))
    except json.JSONDecodeError as err:
        raise UserError(f"{p} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(tools, list) or not tools:
        raise UserError(f"{p} must hold a non-empty JSON list of tools")
    domain_tool: dict[str, str] = {}
    clean = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("domain"), str):
            raise UserError(f"{p}: tool {i} needs a 'domain' naming the prompts it serves")
        try:
            name = tool_spec(t)["name"]
        except ValueError as err:
            raise UserError(f"{p}: tool {i}: {err}") from None
        domain_tool[t["domain"]] = name
        clean.append({k: v for k, v in t.items() if k != "domain"})
    return clean, domain_tool


def check_domains_have_tools(
    examples: dict[str, list[Example]], domain_tool: dict[str, str], source: str
) -> None:
    domains = sorted({e.domain for v in examples.values() for e in v})
    orphans = [d for d in domains if d not in domain_tool]
    if orphans:
        raise UserError(
            f"domain(s) {orphans} of the ASA data have no tool; tools {source!r} serve {sorted(domain_tool)} "
            "(give a tools JSON whose tools name their 'domain')"
        )
