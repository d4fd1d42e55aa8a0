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

from ..base import DataError, UserError
from ..tools.validate import normalize_schema

CALL_CATEGORIES = ("simple_python", "multiple", "parallel", "live_simple", "live_multiple")
NO_CALL_CATEGORIES = ("irrelevance", "live_irrelevance")
CATEGORIES = CALL_CATEGORIES + NO_CALL_CATEGORIES
# Categories a gate may be fitted on (each item's request with its own functions: a call is expected). None of them is
# among the categories a transfer report evaluates (``TRANSFER_EVAL_CATEGORIES``), and nothing fits on those.
FIT_CATEGORIES = (
    "parallel",
    "parallel_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "simple_java",
    "simple_javascript",
    "live_relevance",
)
TRANSFER_EVAL_CATEGORIES = (
    "irrelevance",
    "live_irrelevance",
    "simple_python",
    "multiple",
    "live_simple",
    "live_multiple",
)
if set(FIT_CATEGORIES) & set(TRANSFER_EVAL_CATEGORIES):  # a definition error, caught on import
    raise RuntimeError("a BFCL category is both fit-only and evaluated by the transfer report")
LOADABLE = tuple(dict.fromkeys(CATEGORIES + FIT_CATEGORIES))


@dataclass
class BFCLItem:
    """One BFCL question: chat turns, the tools offered, whether a call is expected, and the allowed answers."""

    id: str
    category: str
    messages: list[dict]
    functions: list[dict]  # OpenAI-style tool dicts
    expects_call: bool
    possible_answer: list[dict] | None


def bfcl_data_dir() -> Path:
    """The ``data`` folder of the installed bfcl-eval package, found without importing the package."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("BFCL data needs the bfcl-eval package: pip install --no-deps bfcl-eval")
    path = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not path.is_dir():
        raise DataError(f"bfcl-eval is installed but has no data directory at {path}")
    return path


def to_openai_tool(fn: dict) -> dict:
    """A BFCL function doc as an OpenAI-style tool dict, its Python-ish types mapped to JSON schema's."""
    return {
        "type": "function",
        "function": {
            "name": fn["name"],
            "description": fn.get("description", ""),
            "parameters": normalize_schema(fn.get("parameters", {"type": "object"})),
        },
    }


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bfcl_size(category: str) -> int:
    """How many items a BFCL category holds."""
    if category not in LOADABLE:
        raise UserError(f"unknown BFCL category {category!r}; valid: {', '.join(LOADABLE)}")
    return len(_read_jsonl(bfcl_data_dir() / f"BFCL_v4_{category}.json"))


def load_bfcl(category: str, limit: int | None = None, seed: int = 0) -> list[BFCLItem]:
    """Items of one BFCL v4 category (evaluated or fit-only, ``LOADABLE``); ``limit`` draws a fixed-seed sample."""
    if category not in LOADABLE:
        raise UserError(f"unknown BFCL category {category!r}; valid: {', '.join(LOADABLE)}")
    root = bfcl_data_dir()
    path = root / f"BFCL_v4_{category}.json"
    if not path.is_file():
        raise DataError(
            f"BFCL category {category!r} has no data file {path}; is bfcl-eval older than BFCL v4?"
        )
    rows = _read_jsonl(path)
    answers: dict[str, list] = {}
    ans_path = root / "possible_answer" / f"BFCL_v4_{category}.json"
    if category not in NO_CALL_CATEGORIES and ans_path.is_file():
        answers = {a["id"]: a["ground_truth"] for a in _read_jsonl(ans_path)}
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise UserError(f"limit must be a positive integer or None, got {limit!r}")
        if limit < len(rows):
            keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
            rows = [rows[i] for i in keep]
    items = []
    for r in rows:
        turns = r["question"][0] if r["question"] and isinstance(r["question"][0], list) else r["question"]
        items.append(
            BFCLItem(
                id=r["id"],
                category=category,
                messages=list(turns),
                functions=[to_openai_tool(f) for f in r["function"]],
                expects_call=category not in NO_CALL_CATEGORIES,
                possible_answer=answers.get(r["id"]),
            )
        )
    return items
