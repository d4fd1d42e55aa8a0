"""ASA examples for a run: the shipped dataset or a user's JSONL, optionally reduced per cell."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..data.asa_data import ASA_SPLITS as SPLITS
from ..data.asa_data import AsaExample as Example
from ..data.asa_data import load_asa_split, load_jsonl_examples

DOMAIN_TOOL = {
    "math": "calculator",
    "code": "python_interpreter",
    "search": "web_search",
    "translation": "translator",
}
__all__ = ["DOMAIN_TOOL", "SPLITS", "Example", "load_examples"]


def _reduce(examples: list[Example], limit: int | None) -> list[Example]:
    """Keep the first ``limit`` per (domain, label) cell, in file order (deterministic, balanced)."""
    if limit is None:
        return examples
    seen: dict[tuple[str, int], int] = defaultdict(int)
    out = []
    for e in examples:
        if seen[(e.domain, e.label)] < limit:
            seen[(e.domain, e.label)] += 1
            out.append(e)
    return out


def load_examples(source: str = "builtin", limit_per_cell: int | None = None) -> dict[str, list[Example]]:
    """Examples per split from the shipped dataset, or from a JSONL with prompt, domain, label, split."""
    if source == "builtin":
        raw = {s: load_asa_split(s) for s in SPLITS}
    else:
        if not Path(source).is_file():
            raise ValueError(f"ASA data {source!r} is neither 'builtin' nor an existing JSONL file")
        rows = load_jsonl_examples(source)
        missing = [e.id for e in rows if not e.split]
        if missing:
            raise ValueError(
                f"{source}: every line needs a split ({', '.join(SPLITS)}); missing for {missing[:3]}"
            )
        raw = {s: [e for e in rows if e.split == s] for s in SPLITS}
    out = {s: _reduce(v, limit_per_cell) for s, v in raw.items()}
    for s, v in out.items():
        labels = {e.label for e in v}
        if labels != {0, 1}:
            raise ValueError(
                f"split {s!r} needs both tool (1) and non-tool (0) prompts; it has labels {labels}"
            )
    return out
