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
from ..data.bfcl import CATEGORIES, NO_CALL_CATEGORIES, bfcl_size, load_bfcl
from ..eval.stats import bootstrap_mean, ci_text, metrics_with_ci
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


def check_unseen(categories: list[str], manifest: dict) -> None:
    """Refuse to report a BFCL category the asset's gate was fitted on (``gate_fit_sources`` in its manifest)."""
    sources = manifest.get("gate_fit_sources", [])
    fitted = [cat for cat in categories if f"bfcl:{cat}" in sources]
    if fitted:
        raise UserError(
            f"the asset's gate was fitted on BFCL {fitted}; evaluate it on categories it never saw "
            f"(fitted on: {', '.join(sources)})"
        )


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
        check_unseen(cfg.categories, steerer.manifest)
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
    out["sizes"] = {
        cat: {"n": sum(it.category == cat for it in items), "of": bfcl_size(cat)} for cat in cfg.categories
    }
    if steerer is not None:
        out["asset"] = {
            "path": str(cfg.asset),
            "gate": steerer.point.gate,
            "layer": steerer.point.layer,
            "action": steerer.point.action,
            "gate_fit_sources": steerer.manifest.get("gate_fit_sources", []),
        }
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
    out["ast_failures"] = {}
    for cat in cfg.categories:
        if cat in NO_CALL_CATEGORIES:
            continue
        for name in conds:
            trig, ok, why = per_item[name]
            idx = [i for i, it in enumerate(items) if it.category == cat and trig[i] and not ok[i]]
            counts: dict[str, int] = {}
            for i in idx:
                counts[failure_kind(why[i])] = counts.get(failure_kind(why[i]), 0) + 1
            out["ast_failures"].setdefault(cat, {})[name] = counts
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


FAILURES = (
    "no call parsed",
    "wrong function",
    "call count",
    "missing argument",
    "extra argument",
    "type",
    "value",
)


def failure_kind(why: str) -> str:
    """The stage a failed call broke at, from ``ast_match``'s reason."""
    if why.startswith("called "):
        return "wrong function"
    if "call(s), expected" in why:
        return "call count"
    if why.startswith(("missing required argument", "missing argument")):
        return "missing argument"
    if why.startswith("unexpected argument"):
        return "extra argument"
    if "should be of type" in why:
        return "type"
    if "not among" in why:
        return "value"
    return "no call parsed"


def bfcl_markdown(res: dict) -> str:
    ci = ci_text
    lines = []
    if "asset" in res:
        a = res["asset"]
        lines += [
            f"Asset `{a['path']}`: gate `{a['gate']}` at layer {a['layer']}, action `{a['action']}`; gate fitted on "
            f"{', '.join(a['gate_fit_sources']) or 'the run data alone'}.",
            "",
        ]
    if "sizes" in res:
        sizes = ", ".join(
            f"{cat} {v['n']}" + (" (all)" if v["n"] == v["of"] else f" of {v['of']}")
            for cat, v in res["sizes"].items()
        )
        lines += [f"Items per category (fixed-seed sample where not all): {sizes}.", ""]
    lines += ["| category | condition | n | trigger rate | AST accuracy |", "|---|---|---|---|---|"]
    for cat, rows in res["categories"].items():
        for name, row in rows.items():
            ast = ci(row["ast_accuracy"]) if "ast_accuracy" in row else "–"
            lines.append(f"| {cat} | {name} | {row['n']} | {ci(row['trigger_rate'])} | {ast} |")
    if "ast_failures" in res:
        lines += [
            "",
            "Why triggered calls failed the AST check (count per category and condition):",
            "",
            "| category | condition | " + " | ".join(FAILURES) + " |",
            "|---|---|" + "---|" * len(FAILURES),
        ]
        for cat, rows in res["ast_failures"].items():
            for name, counts in rows.items():
                lines.append(
                    f"| {cat} | {name} | " + " | ".join(str(counts.get(k, 0)) for k in FAILURES) + " |"
                )
    lines += ["", "| condition | relevance F1 | precision | recall | FPR |", "|---|---|---|---|---|"]
    for name, m in res["overall"].items():
        prec = ci(m["precision"]) if m["tp"] + m["fp"] else "undefined (no calls)"
        lines.append(f"| {name} | {ci(m['f1'])} | {prec} | {ci(m['recall'])} | {ci(m['fpr'])} |")
    return "\n".join(lines)


def write_bfcl(res: dict, out: str | Path) -> dict[str, Path]:
    """bfcl.json (summary), bfcl.md (tables) and items.jsonl (every output), each written atomically."""
    from ..base.files import atomic_write
    from ..runs import save_json

    out = Path(out)
    summary = {k: v for k, v in res.items() if k != "items"}
    paths = {"json": save_json(out / "bfcl.json", summary)}
    md = atomic_write(out / "bfcl.md", bfcl_markdown(res) + "\n")
    items = atomic_write(out / "items.jsonl", "".join(json.dumps(r) + "\n" for r in res["items"]))
    _plot(res, out)
    return {**paths, "md": md, "items": items}


def _plot(res: dict, out: Path) -> None:
    """bfcl_trigger.png (trigger rate per category and condition) and bfcl_ast.png (AST accuracy), with intervals."""
    from ..eval.plots import grouped_bars_with_ci

    cats = list(res["categories"])
    names = list(next(iter(res["categories"].values()))) if cats else []

    def series(key: str, keep: list[str]) -> dict:
        return {
            n: tuple([list(res["categories"][c][n][key][j] for c in keep) for j in range(3)]) for n in names
        }

    if cats:
        grouped_bars_with_ci(
            cats,
            series("trigger_rate", cats),
            out / "bfcl_trigger.png",
            title="BFCL trigger rate by category (no-call categories: false calls), 95% bootstrap CI",
            ylabel="trigger rate",
        )
    calls = [c for c in cats if c not in NO_CALL_CATEGORIES]
    if calls:
        grouped_bars_with_ci(
            calls,
            series("ast_accuracy", calls),
            out / "bfcl_ast.png",
            title="BFCL AST accuracy by category, 95% bootstrap CI",
            ylabel="AST accuracy",
        )
