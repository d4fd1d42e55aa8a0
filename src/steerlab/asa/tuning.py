"""ASA's choices, on VALID only: screen every push by its first token, choose the steering operating point (and the
paper's, as a reference row), then choose the gated action by decoding whole calls.

Why a first-token screen: with the marker as the reply's start (prefix mode), the greedy first token usually says
whether the reply calls, so each (layer, direction, strength) costs one token after a context computed once. The
gate is a function of the unsteered state, so every tau is then scored offline from the same screen. Its limit:
a reply whose first tokens are the marker's but that goes on to something else counts as a call. Seen on the
embedded model once the few-shot turns showed tool results as ``<tool_response>`` turns: pushed, it writes
``<tool_response``, rated a call here and not one by generation. The action is therefore chosen by decoding whole
calls (``stage_actions``), which catches it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..eval.metrics import trigger_metrics
from ..generation import generate_conditions
from ..generation.rules import marker_start_ids
from ..runs import load_tensors, save_json, save_tensors
from ..stages import StageContext
from ..steering import steer
from ..tools import call_success, format_spec, is_triggered
from .apply import GatedAction
from .fitting import first_token_calls
from .gate import ternary_gate
from .inputs import inputs, layer_params, states
from .point import OperatingPoint

PAPER_SELECTION = "max VALID F1 subject to FPR <= baseline FPR + 0.02 (else max F1)"


def _variants(c: object, layers: list[int], fitted: list[str]) -> list[dict]:
    """Every screened push: (layer, direction kind, beta, strength); the paper's kind also pushed the other way.
    A behaviour kind that could not be fitted (``behav`` when the plain model never called) is left out."""
    out = []
    kinds = [k for k in c.directions if k in ("asa", "global") or k in fitted]
    for layer in layers:
        for kind in kinds:
            for beta in c.betas if kind == "asa" else [0.0]:
                for strength in c.strengths:
                    out.append({"layer": layer, "direction": kind, "beta": beta, "strength": strength})
    return out


def direction_of(row: dict) -> str:
    """The direction kind of a screened push or a tuned point (``kind`` in runs written before it was named
    ``direction``, like the operating point's field)."""
    return row["direction"] if "direction" in row else row["kind"]


def _renamed(row: dict) -> dict:
    """A screened push read from disk, its direction kind under ``direction`` whatever run wrote it."""
    return {**{k: v for k, v in row.items() if k != "kind"}, "direction": direction_of(row)}


def _key(v: dict, sign: str) -> str:
    return f"{v['layer']}|{direction_of(v)}|{v['beta']:g}|{v['strength']:g}|{sign}"


def stage_screen(ctx: StageContext) -> dict:
    """VALID: for each push (and the plain model), log P(the reply starts the marker) and whether its greedy first
    token does, per prompt."""
    c, lm, data = ctx.config, ctx.lm, inputs(ctx)
    layers = ctx.result("fit")["layers"]
    valid = states(ctx, "valid")
    y = torch.as_tensor(data.labels("valid"))
    conds: dict = {"+": {"baseline": None}, "-": {"baseline": None}}
    variants = _variants(c, layers, ctx.result("vectors")["behaviour_kinds"])
    # A +push is only ever read where the gate can open (p > tau > 0.5 at some candidate layer; and on tool prompts,
    # for the edge table); a -push only where it can close (p < 1 - tau < 0.5). Elsewhere the row keeps the plain
    # model's value, which nothing reads. Any tau in (0.5, 1) is covered, so the screen does not depend on taus.
    p = torch.stack([layer_params(ctx, layer).p_tool(valid[:, layer]) for layer in layers])
    rows = {
        "+": torch.nonzero((p.max(0).values > 0.5) | (y == 1)).flatten().tolist(),
        "-": torch.nonzero(p.min(0).values < 0.5).flatten().tolist(),
    }
    rows["-"] = sorted(set(rows["-"]) | (set(range(len(y))) - set(rows["+"])))  # every row gets a baseline
    for layer in layers:
        params = layer_params(ctx, layer)
        dom = params.route(valid[:, layer])
        for v in [x for x in variants if x["layer"] == layer]:
            dirs = params.directions(dom, v["beta"], v["direction"])
            for sign in ("+", "-") if v["direction"] == "asa" else ("+",):
                coef = (1 if sign == "+" else -1) * v["strength"] * params.mean_norm
                sub = dirs[rows[sign]]

                def setup(idx: list[int], sub: torch.Tensor = sub, coef: float = coef, layer: int = layer):  # noqa: ANN202
                    return steer(lm, sub[idx], layer=layer, site=c.site, coef=coef, policy="prompt_last")

                conds[sign][_key(v, sign)] = setup
    marker_ids = marker_start_ids(lm.tokenizer, format_spec(c.call_format).marker)
    msgs = data.messages("valid")
    res = {}
    for sign in ("+", "-"):
        if rows[sign] and (len(conds[sign]) > 1 or sign == "-"):
            part = first_token_calls(ctx, [msgs[i] for i in rows[sign]], marker_ids, conds[sign])
            res[sign] = (rows[sign], part)
    base_logp, base_called = torch.zeros(len(y)), torch.zeros(len(y), dtype=torch.bool)
    for idx, part in res.values():
        base_logp[idx], base_called[idx] = part["baseline"]
    tensors = {"baseline::logp": base_logp, "baseline::called": base_called.float()}
    for idx, part in res.values():
        for k, (logp, called) in part.items():
            if k != "baseline":
                full_logp, full_called = base_logp.clone(), base_called.clone()
                full_logp[idx], full_called[idx] = logp, called
                tensors[f"{k}::logp"], tensors[f"{k}::called"] = full_logp, full_called.float()
    save_tensors(ctx.out / "screen.safetensors", tensors)
    n_rows = sum(len(rows[s]) * len(conds[s]) for s in res)
    return {
        "variants": variants,
        "n": len(y),
        "n_conditions": len(conds["+"]) + len(conds["-"]) - 2 + 1,
        "rows_screened": n_rows,
        "rows_full_grid": len(y) * (len(conds["+"]) + len(conds["-"]) - 1),
    }


def _metrics(y: np.ndarray, pred: np.ndarray, doms: np.ndarray) -> dict:
    m = trigger_metrics(y, pred)
    per = {d: trigger_metrics(y[doms == d], pred[doms == d])["f1"] for d in sorted(set(doms))}
    return {
        "f1": m["f1"],
        "fpr": m["fpr"],
        "precision": m["precision"],
        "recall": m["recall"],
        "domain_f1": per,
        "min_domain_f1": min(per.values()),
    }


def pick_best(pool: list[dict]) -> dict:
    """The grid row with the best VALID F1. Ties (e.g. no push opens a call anywhere: every F1 is 0) go to the layer
    whose gate decides best on VALID, since the prefill actions act on the gate alone; then higher tau, smaller
    strength."""
    return max(
        pool, key=lambda g: (round(g["f1"], 9), round(g.get("gate_f1", 0.0), 9), g["tau"], -g["strength"])
    )


def stage_tune(ctx: StageContext) -> dict:
    """Choose the steering operating point (row ``asa``: the closed gate forbids the marker) and the paper's
    (row ``paper``: the closed gate pushes the other way) from the screen; every tau scored offline."""
    c, data = ctx.config, inputs(ctx)
    fit = ctx.result("fit")
    screen = ctx.result("screen")
    t = load_tensors(ctx.path("screen") / "screen.safetensors")
    called = {k[: -len("::called")]: t[k].bool().numpy() for k in t if k.endswith("::called")}
    y, doms = data.labels("valid"), np.array(data.domains("valid"))
    valid = states(ctx, "valid")
    cal_y = data.labels("cal")
    base = called["baseline"]
    base_m = _metrics(y, base, doms)
    gates: dict[int, torch.Tensor] = {}
    cross: dict[int, torch.Tensor] = {}
    for layer in fit["layers"]:
        gates[layer] = layer_params(ctx, layer).p_tool(valid[:, layer])
        if fit["crossfit"]:
            cross[layer] = layer_params(ctx, layer, "crossfit").p_tool(states(ctx, "cal")[:, layer])
    grid = []
    for v in map(_renamed, screen["variants"]):
        plus = called[_key(v, "+")]
        minus = called.get(_key(v, "-"))
        for tau in c.taus:
            gate = ternary_gate(gates[v["layer"]], tau).numpy()
            gate_f1 = trigger_metrics(y, gate > 0)["f1"]  # the gate's own decision: what a prefill acts on
            xfpr = (
                float((ternary_gate(cross[v["layer"]], tau).numpy() > 0)[cal_y == 0].mean())
                if cross
                else None
            )
            closes = [("forbid", np.zeros_like(plus))] + ([("push", minus)] if minus is not None else [])
            for on_close, closed in closes:
                pred = np.where(gate > 0, plus, np.where(gate < 0, closed, base))
                grid.append(
                    {
                        **v,
                        "tau": tau,
                        "on_close": on_close,
                        "crossfit_fpr": xfpr,
                        "plus_rate_tool": float(plus[y == 1].mean()),
                        "plus_rate_nontool": float(plus[y == 0].mean()),
                        "gate_f1": float(np.nan_to_num(gate_f1)),
                        **_metrics(y, pred, doms),
                    }
                )
    ok = [
        g
        for g in grid
        if g["on_close"] == "forbid"
        and g["fpr"] <= c.max_fpr
        and g["min_domain_f1"] >= c.min_domain_f1
        and (g["crossfit_fpr"] is None or g["crossfit_fpr"] <= c.max_fpr)
    ]
    met = bool(ok)
    pool = ok or [g for g in grid if g["on_close"] == "forbid" and g["fpr"] <= c.max_fpr] or grid
    best = pick_best(pool)
    paper_pool = [g for g in grid if g["direction"] == "asa" and g["on_close"] == "push"]
    paper = None
    if paper_pool:
        limit = base_m["fpr"] + 0.02
        paper = max(
            [g for g in paper_pool if g["fpr"] <= limit] or paper_pool,
            key=lambda g: (round(g["f1"], 9), -g["fpr"], -g["strength"], -g["tau"]),
        )
    save_json(ctx.out / "grid.json", grid)
    edge = _edge(called, screen["variants"], y, best["layer"], c)
    _plot(grid, best, edge, base_m["f1"], ctx.out)
    return {
        "best": best,
        "paper": paper,
        "constraints_met": met,
        "baseline_valid": base_m,
        "layers": fit["layers"],
        "n_valid": int(len(y)),
        "edge": edge,
        "selection": (
            f"max VALID F1 (closed gate forbids the marker) subject to FPR <= {c.max_fpr}, the cross-fit gate's FPR "
            f"on CAL <= {c.max_fpr} and every domain's F1 >= {c.min_domain_f1}; ties: the gate's own VALID F1, higher tau, "
            "smaller strength"
        ),
        "paper_selection": PAPER_SELECTION,
    }


def _edge(called: dict, variants: list[dict], y: np.ndarray, layer: int, c: object) -> dict:
    """At the chosen layer, per direction kind: the share of tool prompts whose reply starts a call under +push,
    by strength (where the push works, and where it breaks)."""
    out: dict = {}
    for v in variants:
        if v["layer"] != layer:
            continue
        name = direction_of(v) if direction_of(v) != "asa" else f"asa(beta={v['beta']:g})"
        out.setdefault(name, {})[f"{v['strength']:g}"] = float(called[_key(v, "+")][y == 1].mean())
    return out


def _plot(grid: list[dict], best: dict, edge: dict, base_f1: float, out: object) -> None:
    from ..eval.plots import heatmap, line_sweep

    strengths = sorted({g["strength"] for g in grid})
    line_sweep(
        strengths,
        {k: [v.get(f"{s:g}", float("nan")) for s in strengths] for k, v in edge.items()},
        out / "strength_edge.png",
        title=f"Share of VALID tool prompts whose reply starts a call under +push, layer {best['layer']}",
        xlabel="strength (× mean hidden norm)",
        ylabel="calls on tool prompts",
        mark_x=best["strength"],
    )
    rows = [
        g
        for g in grid
        if (g["layer"], g["direction"], g["beta"], g["on_close"])
        == (best["layer"], best["direction"], best["beta"], "forbid")
    ]
    taus = sorted({g["tau"] for g in rows})
    mat = [
        [next(g["f1"] for g in rows if g["strength"] == s and g["tau"] == t) for t in taus] for s in strengths
    ]
    heatmap(
        mat,
        [f"{s:g}" for s in strengths],
        [f"{t:g}" for t in taus],
        out / "strength_tau_f1.png",
        title=f"VALID trigger F1, {best['direction']} at layer {best['layer']}, closed gate forbids (baseline {base_f1:.2f})",
        xlabel="gate threshold τ",
        ylabel="strength (× mean hidden norm)",
        colorbar_label="trigger F1",
    )


def point_for(ctx: StageContext, best: dict, action: str, constrain: str) -> OperatingPoint:
    """The operating point chosen on VALID (``best`` from tune), acting one way: what the TEST rows, the asset and
    every consumer of the asset run."""
    c = ctx.config
    return point_of(c, inputs(ctx), best, action, constrain, string_pattern=c.string_pattern or None)


def point_of(
    c: object,
    data: object,
    best: dict,
    action: str,
    constrain: str,
    gate: str | None = None,
    string_pattern: str | None = None,
) -> OperatingPoint:
    """``best`` (a tune row) as an OperatingPoint under config ``c`` and the run's data; ``gate`` defaults to the
    row's own (or ``domain``)."""
    return OperatingPoint(
        layer=best["layer"],
        strength=best["strength"],
        tau=best["tau"],
        beta=best["beta"],
        site=c.site,
        direction=direction_of(best),
        action=action,
        on_close="forbid",
        constrain=constrain,
        domain_tools=data.domain_tool,
        string_pattern=string_pattern,
        trigger_mode=c.trigger_mode,
        call_format=c.call_format,
        gate=gate if gate is not None else best.get("gate", "domain"),
    )


def action_for(
    ctx: StageContext, lm: object, params: object, best: dict, action: str, constrain: str, **kw: object
) -> GatedAction:
    """The chosen operating point acting one way (the TEST rows and the asset build theirs the same way)."""
    return point_for(ctx, best, action, constrain).bind(lm, params, inputs(ctx).tools, **kw)


def stage_actions(ctx: StageContext) -> dict:
    """Choose the asset's action on VALID: decode whole calls on the rows the gate opens (at most ``action_rows``)
    under each action, and keep the one whose calls succeed most (parse, right tool, valid arguments)."""
    c, lm, data = ctx.config, ctx.lm, inputs(ctx)
    from .gate_stage import chosen_params, chosen_point

    best = chosen_point(ctx)
    params = chosen_params(ctx, best)
    valid = states(ctx, "valid")
    opens = np.nonzero(ternary_gate(params.p_tool(valid), best["tau"]).numpy() > 0)[0]
    keep = (
        opens[np.linspace(0, len(opens) - 1, min(len(opens), c.action_rows)).round().astype(int)]
        if len(opens)
        else opens
    )
    ex = [data.examples["valid"][i] for i in keep]
    msgs = [data.messages("valid")[i] for i in keep]
    conds = {a: action_for(ctx, lm, params, best, a, c.constrain) for a in c.actions}
    rows = {}
    if len(ex):
        # every row here decodes a whole call: the actions decode together (docs/limits.md)
        opts = data.call_options(ctx.progress, "actions (VALID)").replace(merge_conditions=True)
        gens = generate_conditions(lm, msgs, conds, opts)
        for a in c.actions:
            ok = [
                call_success(g.text, c.call_format, data.tools, data.domain_tool.get(e.domain))[0]
                for g, e in zip(gens[a], ex)
                if is_triggered(g.text, c.call_format, c.trigger_mode) and e.label == 1
            ]
            trig = sum(is_triggered(g.text, c.call_format, c.trigger_mode) for g in gens[a])
            rows[a] = {"triggered": int(trig), "success": int(sum(ok)), "success_rate": sum(ok) / len(ex)}
    chosen = max(c.actions, key=lambda a: (rows.get(a, {}).get("success_rate", 0.0), -c.actions.index(a)))
    return {
        "rows": rows,
        "n_rows": int(len(ex)),
        "chosen": chosen,
        "constrain": c.constrain,
        "rule": "the action whose calls succeed on the most gate-open VALID rows (ties: the first listed)",
    }
