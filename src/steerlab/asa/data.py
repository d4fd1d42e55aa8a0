"""ASA examples for a run: the shipped dataset or a user's JSONL, optionally reduced per cell."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("cal", "train", "valid", "test")
DOMAIN_TOOL = {
    "math": "calculator",
    "code": "python_interpreter",
    "search": "web_search",
    "translation": "translator",
}


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    domain: str
    label: int


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
        from ..data.asa_data import load_asa_split

        raw = {
            s: [Example(str(e.id), e.prompt, e.domain, int(e.label)) for e in load_asa_split(s)]
            for s in SPLITS
        }
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"ASA data {source!r} is neither 'builtin' nor an existing JSONL file")
        raw = {s: [] for s in SPLITS}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                split = row["split"]
                ex = Example(str(row.get("id", n)), row["prompt"], row["domain"], int(row["label"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"{path}:{n}: need JSON with prompt, domain, label (0/1), split: {err}"
                ) from None
            if split not in raw:
                raise ValueError(f"{path}:{n}: split {split!r} is not one of {', '.join(SPLITS)}")
            if ex.label not in (0, 1):
                raise ValueError(f"{path}:{n}: label must be 0 or 1, got {ex.label}")
            raw[split].append(ex)
    out = {s: _reduce(v, limit_per_cell) for s, v in raw.items()}
    for s, v in out.items():
        labels = {e.label for e in v}
        if labels != {0, 1}:
            raise ValueError(
                f"split {s!r} needs both tool (1) and non-tool (0) prompts; it has labels {labels}"
            )
    return out
