"""BFCL relevance detection and AST accuracy for the plain model and for an ASA asset, by real generation.

The prompt is ASA's (tool list + call format + few-shot turns) with each item's own functions as the tools. An ASA
asset is fitted on the ASA dataset, never on BFCL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ModelConfig, UserError, check_range, opt
from ..data.bfcl import CATEGORIES, NO_CALL_CATEGORIES, load_bfcl
from ..eval.stats import bootstrap_mean, metrics_with_ci
from ..generation import generate_conditions
from ..models import LoadedModel
from ..tools import ast_match, call_stop, is_triggered, parse_tool_calls, tool_spec
from .prompt import DEFAULT_FEW_SHOT, PromptBuilder


@dataclass
class BfclConfig(ModelConfig):
    WHAT = "BFCL config"

    model: str | None = opt(None, "default: the asset's model, else smollm2-135m")
    asset: str | None = opt(None, "an ASA asset directory (fitted on the ASA data, never on BFCL)")
    categories: list[str] = opt(["irrelevance", "simple_python"], "BFCL v4 categories")
    limit: int = opt(50, "items per category (a fixed-seed sample; 0 = all)")
    seed: int = opt(0, "sampling and bootstrap seed")
    max_new_tokens: int = opt(96, "tokens generated per reply")
    batch_size: int = opt(8, "generation batch")
    n_boot: int = opt(2000, "bootstrap resamples")
    out: str = opt("runs/bfcl", "output directory")

    def validate(self) -> None:
        for cat in self.categories:
            if cat not in CATEGORIES:
                raise UserError(f"unknown BFCL category {cat!r}; valid: {', '.join(CATEGORIES)}")
        if not self.categories:
            raise UserError("categories must not be empty")
        check_range("limit", self.limit, 0)
        for name in ("max_new_tokens", "batch_size", "n_boot"):
            check_range(name, getattr(self, name), 1)
        if self.asset is not None and not Path(self.asset).is_dir():
            raise UserError(f"asset {self.asset!r} is not a directory (an exported ASA asset)")

    def model_spec(self) -> str:
        if self.model:
            return self.model
        if self.asset:
            from ..assets import load_asset

            return load_asset(self.asset)[1]["model"]
        return "smollm2-135m"


def evaluate_bfcl(lm: LoadedModel, cfg: BfclConfig, progress: bool = True) -> dict:
    """Per category: trigger rate, AST accuracy (call categories); overall relevance metrics with intervals; and
    every item's output (``items``)."""
    fmt, mode, few_shot = "tool_call_json", "prefix", list(DEFAULT_FEW_SHOT)
    steerer = None
    if cfg.asset is not None:
        from .runtime import AsaSteerer

        steerer = AsaSteerer(lm, cfg.asset)
        fmt, mode = steerer.fmt, steerer.trigger_mode
        few_shot = steerer.builder.few_shot
    items = [it for cat in cfg.categories for it in load_bfcl(cat, limit=cfg.limit or None, seed=cfg.seed)]
    msgs = []
    for it in items:
        # rendered as steerlab serve renders a request with these functions as its tools
        msgs.append(PromptBuilder(it.functions, call_format=fmt, few_shot=few_shot).messages(it.messages))
    conds: dict = {"baseline": None}
    if steerer is not None:
        # the asset's operating point as the server runs it: a routed tool the item does not offer is never
        # forced on a call (the router's domains name the asset's tools, not BFCL's), so the call may name any of
        # the item's own functions
        offered = [{tool_spec(f)["name"] for f in it.functions} for it in items]
        conds["asa"] = steerer.steering(tools=lambda i: items[i].functions, offered=lambda i: offered[i])
    gens = generate_conditions(
        lm,
        msgs,
        conds,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        stop=call_stop(fmt, mode),
        progress=progress,
        desc="BFCL",
    )
    y = np.array([it.expects_call for it in items])
    out: dict = {"n": len(items), "categories": {}, "overall": {}, "config": cfg.to_dict(), "items": []}
    per_item: dict[str, list] = {}
    for name in conds:
        trig = np.array([is_triggered(g.text, fmt, mode) for g in gens[name]])
        ok = np.zeros(len(items), dtype=bool)
        why = [""] * len(items)
        for i, it in enumerate(items):
            if it.category not in NO_CALL_CATEGORIES and trig[i]:
                calls = parse_tool_calls(gens[name][i].text, fmt).calls
                ok[i], why[i] = (
                    ast_match(calls, it.possible_answer, it.functions) if calls else (False, "no call")
                )
        per_item[name] = [trig, ok, why]
        out["overall"][name] = metrics_with_ci(y, trig, n_boot=cfg.n_boot, seed=cfg.seed)
        for cat in cfg.categories:
            idx = [i for i, it in enumerate(items) if it.category == cat]
            row = {
                "n": len(idx),
                "trigger_rate": bootstrap_mean(trig[idx].astype(float), cfg.n_boot, seed=cfg.seed),
            }
            if cat not in NO_CALL_CATEGORIES:
                row["ast_accuracy"] = bootstrap_mean(ok[idx].astype(float), cfg.n_boot, seed=cfg.seed)
            out["categories"].setdefault(cat, {})[name] = row
    for i, it in enumerate(items):
        for name in conds:
            trig, ok, why = per_item[name]
            out["items"].append(
                {
                    "id": it.id,
                    "category": it.category,
                    "condition": name,
                    "expects_call": it.expects_call,
                    "triggered": bool(trig[i]),
                    "ast_match": bool(ok[i]),
                    "why": why[i],
                    "output": gens[name][i].text,
                }
            )
    return out


def bfcl_markdown(res: dict) -> str:
    def ci(v: tuple) -> str:
        return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"

    lines = ["| category | condition | n | trigger rate | AST accuracy |", "|---|---|---|---|---|"]
    for cat, rows in res["categories"].items():
        for name, row in rows.items():
            ast = ci(row["ast_accuracy"]) if "ast_accuracy" in row else "–"
            lines.append(f"| {cat} | {name} | {row['n']} | {ci(row['trigger_rate'])} | {ast} |")
    lines += ["", "| condition | relevance F1 | precision | recall | FPR |", "|---|---|---|---|---|"]
    for name, m in res["overall"].items():
        prec = ci(m["precision"]) if m["tp"] + m["fp"] else "undefined (no calls)"
        lines.append(f"| {name} | {ci(m['f1'])} | {prec} | {ci(m['recall'])} | {ci(m['fpr'])} |")
    return "\n".join(lines)


def write_bfcl(res: dict, out: str | Path) -> dict[str, Path]:
    """bfcl.json (summary), bfcl.md (tables) and items.jsonl (every output), each written atomically."""
    from ..runs import save_json

    out = Path(out)
    summary = {k: v for k, v in res.items() if k != "items"}
    paths = {"json": save_json(out / "bfcl.json", summary)}
    md = out / "bfcl.md"
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(bfcl_markdown(res) + "\n")
    tmp.replace(md)
    items = out / "items.jsonl"
    tmp = items.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in res["items"]))
    tmp.replace(items)
    return {**paths, "md": md, "items": items}
