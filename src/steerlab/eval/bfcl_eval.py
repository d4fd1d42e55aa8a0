"""BFCL relevance detection and AST accuracy for the plain model and for an ASA asset, by real generation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.bfcl import NO_CALL_CATEGORIES, load_bfcl
from ..generation import generate_conditions
from ..models import LoadedModel
from ..tools import ast_match, parse_tool_calls
from .stats import bootstrap_mean, metrics_with_ci


@dataclass
class BfclConfig:
    categories: tuple[str, ...] = ("irrelevance", "simple_python")
    limit: int | None = 50  # per category, fixed-seed sample; None = all
    seed: int = 0
    max_new_tokens: int = 96
    batch_size: int = 8
    n_boot: int = 2000


def evaluate_bfcl(
    lm: LoadedModel, cfg: BfclConfig, asa_asset: str | None = None, progress: bool = True
) -> dict:
    """Per category: trigger rate, AST accuracy (call categories); overall relevance metrics with intervals.

    The prompt is ASA's (tool list + format + few-shot turns) with each item's own functions as the tools.
    An ASA asset is fitted on the ASA dataset, never on BFCL.
    """
    from ..asa.prompt import DEFAULT_FEW_SHOT, PromptBuilder
    from ..asa.triggers import call_stop, is_triggered
    from ..steering import steer

    fmt, mode, few_shot = "tool_call_json", "prefix", list(DEFAULT_FEW_SHOT)
    steerer = None
    if asa_asset is not None:
        from ..asa.runtime import AsaSteerer

        steerer = AsaSteerer(lm, asa_asset)
        fmt, mode = steerer.fmt, steerer.mode
        few_shot = steerer.builder.few_shot
    items = [it for cat in cfg.categories for it in load_bfcl(cat, limit=cfg.limit, seed=cfg.seed)]
    msgs = []
    for it in items:
        pb = PromptBuilder(it.functions, call_format=fmt, few_shot=few_shot)
        system = pb.messages("")[:-1]
        user_turns = [m for m in it.messages if m["role"] != "system"]
        msgs.append(system + user_turns)
    conds: dict = {"baseline": None}
    if steerer is not None:

        def setup(idx: list[int]):  # noqa: ANN202
            return steer(
                lm,
                None,
                layer=steerer.params.layer,
                site=steerer.manifest["site"],
                policy="prompt_last",
                controller=steerer.controller(),
            )

        conds["asa"] = setup
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
    out: dict = {"n": len(items), "categories": {}, "overall": {}, "config": cfg.__dict__}
    for name in conds:
        trig = np.array([is_triggered(g.text, fmt, mode) for g in gens[name]])
        out["overall"][name] = metrics_with_ci(y, trig, n_boot=cfg.n_boot, seed=cfg.seed)
        for cat in cfg.categories:
            idx = [i for i, it in enumerate(items) if it.category == cat]
            row = {
                "n": len(idx),
                "trigger_rate": bootstrap_mean(trig[idx].astype(float), cfg.n_boot, seed=cfg.seed),
            }
            if cat not in NO_CALL_CATEGORIES:
                ok = []
                for i in idx:
                    calls = parse_tool_calls(gens[name][i].text, fmt).calls if trig[i] else []
                    ok.append(bool(calls) and ast_match(calls, items[i].possible_answer)[0])
                row["ast_accuracy"] = bootstrap_mean(np.array(ok, dtype=float), cfg.n_boot, seed=cfg.seed)
            out["categories"].setdefault(cat, {})[name] = row
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
        lines.append(
            f"| {name} | {ci(m['f1'])} | {ci(m['precision'])} | {ci(m['recall'])} | {ci(m['fpr'])} |"
        )
    return "\n".join(lines)
