"""BFCL v4 (Berkeley Function Calling Leaderboard) items, read from the files inside the `bfcl-eval` package.

Only the JSON data files are read; the package's runtime is never imported (install it with
``pip install --no-deps bfcl-eval``).
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..tools.validate import TYPE_ALIASES

CALL_CATEGORIES = ("simple_python", "multiple", "parallel", "live_simple", "live_multiple")
NO_CALL_CATEGORIES = ("irrelevance", "live_irrelevance")
CATEGORIES = CALL_CATEGORIES + NO_CALL_CATEGORIES


@dataclass
class BFCLItem:
    id: str
    category: str
    messages: list[dict]
    functions: list[dict]  # OpenAI-style tool dicts
    expects_call: bool
    possible_answer: list[dict] | None


def bfcl_data_dir() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("BFCL data needs the bfcl-eval package: pip install --no-deps bfcl-eval")
    path = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not path.is_dir():
        raise ValueError(f"bfcl-eval is installed but has no data directory at {path}")
    return path


def _schema(node: object) -> object:
    """BFCL's Python-ish schema types mapped to JSON schema, recursively."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "type" and isinstance(v, str):
                mapped = TYPE_ALIASES.get(v, v)
                if mapped is not None:
                    out[k] = mapped
            else:
                out[k] = _schema(v)
        return out
    if isinstance(node, list):
        return [_schema(x) for x in node]
    return node


def to_openai_tool(fn: dict) -> dict:
    return {
        "type": "function",
        "function": {
            "name": fn["name"],
            "description": fn.get("description", ""),
            "parameters": _schema(fn.get("parameters", {"type": "object"})),
        },
    }


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_bfcl(category: str, limit: int | None = None, seed: int = 0) -> list[BFCLItem]:
    """Items of one BFCL v4 category; ``limit`` draws a fixed-seed sample."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; valid: {', '.join(CATEGORIES)}")
    root = bfcl_data_dir()
    rows = _read_jsonl(root / f"BFCL_v4_{category}.json")
    answers: dict[str, list] = {}
    ans_path = root / "possible_answer" / f"BFCL_v4_{category}.json"
    if category in CALL_CATEGORIES and ans_path.is_file():
        answers = {a["id"]: a["ground_truth"] for a in _read_jsonl(ans_path)}
    if limit is not None and limit < len(rows):
        rows = sorted(random.Random(seed).sample(rows, limit), key=lambda r: rows.index(r))
    items = []
    for r in rows:
        turns = r["question"][0] if r["question"] and isinstance(r["question"][0], list) else r["question"]
        items.append(
            BFCLItem(
                id=r["id"],
                category=category,
                messages=list(turns),
                functions=[to_openai_tool(f) for f in r["function"]],
                expects_call=category in CALL_CATEGORIES,
                possible_answer=answers.get(r["id"]),
            )
        )
    return items
