"""ASA on TEST, by real generation: the chosen steering operating point, every gated action, the paper's setting,
the ablations (no gate, global direction, random direction, -direction, oracle gate), the probe alone, and the
few-shot prompts a user would try instead; intervals and paired differences."""

from __future__ import annotations

import json

import numpy as np

from ..eval.stats import bootstrap_mean, metrics_with_ci, paired_bootstrap_diff
from ..generation import generate_conditions
from ..probes import roc_auc
from ..runs import save_json
from ..stages import StageContext
from ..tools import call_success, decision_stop, is_triggered
from .gate import ternary_gate
from .gate_stage import chosen_params, chosen_point
from .inputs import inputs, layer_params, states
from .point import OperatingPoint
from .tuning import action_for

ROW_DOC = {
    "baseline": "no steering",
    "asa": "ASA, the steering variant chosen on VALID: gated push at the last prompt token; a closed gate forbids "
    "the marker",
    "steer+cd": "as asa, then the call decoded under the router's tool schema",
    "prefill": "gate open: the reply starts with the marker; closed: the marker is forbidden",
    "prefill+cd": "prefill, then the call decoded under the router's tool schema",
    "prefill+cd_model": "prefill, then the call decoded under any tool's schema (the model picks the tool)",
    "steer+prefill+cd": "gated push and prefill, then the call under the router's tool schema",
    "steer+prefill": "gated push and prefill (the call unconstrained)",
    "paper": "the paper's setting: mean-difference direction, ±push by the gate (tuned on VALID by its own rule)",
    "no_gate": "asa's push on every prompt (no gate)",
    "global_only": "gated, the global mean-difference direction in place of asa's",
    "random": "gated, a random unit direction of asa's strength",
    "negative": "gated, -direction",
    "oracle": "asa with the gate from the true label (+ tool, - non-tool)",
    "probe_only": "the probe's p>0.5 as the decision (no generation)",
}


TRIGGER_ONLY = ("paper", "no_gate", "global_only", "random", "negative", "oracle")
# the row of each gated action, without and with the call decoded under a schema
ACTION_ROW = {
    "steer": ("asa", "steer+cd"),
    "prefill": ("prefill", "prefill+cd"),
    "steer+prefill": ("steer+prefill", "steer+prefill+cd"),
}


def _row_metrics(
    gens: list, ex: list, y: np.ndarray, c: object, data: object, calls: bool = True
) -> tuple[dict, np.ndarray, list]:
    """Trigger metrics with intervals; with ``calls`` (whole calls decoded) the success precision too."""
    trig = np.array([is_triggered(g.text, c.call_format, c.trigger_mode) for g in gens])
    success = [
        call_success(g.text, c.call_format, data.tools, data.domain_tool.get(e.domain))
        if t and calls
        else (False, "" if t else "not decoded")
        for g, e, t in zip(gens, ex, trig)
    ]
    good = np.array([ok and e.label == 1 for (ok, _), e in zip(success, ex)])
    m = metrics_with_ci(y, trig, n_boot=c.n_boot, seed=c.seed)
    m["success_precision"] = float(good[trig].mean()) if trig.any() and calls else None
    m["calls_decoded"] = calls
    m["n_triggered"] = int(trig.sum())
    return m, trig, success


def stage_evaluate(ctx: StageContext) -> dict:
    c, lm, data = ctx.config, ctx.lm, inputs(ctx)
    tune = ctx.result("tune")
    best, paper = chosen_point(ctx), tune["paper"]
    params = chosen_params(ctx, best)
    ex, y = data.examples["test"], data.labels("test")
    cd = c.constrain != "none"
    conds: dict = {"baseline": None}
    trigger_only = set(TRIGGER_ONLY)
    if c.rows == "all":
        if "steer" in c.actions:
            conds["asa"] = action_for(ctx, lm, params, best, "steer", "none")
            if cd:
                conds["steer+cd"] = action_for(ctx, lm, params, best, "steer", c.constrain)
        if "prefill" in c.actions:
            conds["prefill"] = action_for(ctx, lm, params, best, "prefill", "none")
            if cd:
                conds["prefill+cd"] = action_for(ctx, lm, params, best, "prefill", c.constrain)
                conds["prefill+cd_model"] = action_for(ctx, lm, params, best, "prefill", "model")
        if "steer+prefill" in c.actions and cd:
            conds["steer+prefill+cd"] = action_for(ctx, lm, params, best, "steer+prefill", c.constrain)
    else:  # the steering row (its trigger decision) and the asset's action with its call decoded
        chosen = ctx.result("actions")["chosen"]
        row = ACTION_ROW[chosen][1 if cd else 0]
        if "steer" in c.actions and row != "asa":
            conds["asa"] = action_for(ctx, lm, params, best, "steer", "none")
            trigger_only.add("asa")
        conds[row] = action_for(ctx, lm, params, best, chosen, c.constrain)
    if paper is not None:
        conds["paper"] = _paper(ctx, lm, layer_params(ctx, paper["layer"]), paper)
    for mode in ("no_gate", "global_only", "random", "negative", "oracle"):
        conds[mode] = action_for(
            ctx, lm, params, best, "steer", "none", ablation=mode, labels=list(y), seed=c.seed
        )
    # The rows a user would deploy decode whole calls (success precision); the reference and ablation rows only need
    # the trigger decision, so they stop once it is known (a call would cost ~40 decoding steps per row). One call:
    # every condition shares each batch's context (all but the last prompt token), computed once.
    whole = data.call_options(ctx.progress, "evaluate (TEST)")
    decision = decision_stop(c.call_format, c.trigger_mode)
    short = {"max_new_tokens": 16, "stop": decision} if decision is not None else {}
    gens = generate_conditions(
        lm,
        data.messages("test"),
        conds,
        whole,
        per_condition={k: short for k in conds if k in trigger_only and short},
    )
    rows, preds, predictions = {}, {}, []
    for name in conds:
        rows[name], preds[name], success = _row_metrics(
            gens[name], ex, y, c, data, calls=name not in trigger_only or decision is None
        )
        for i, (g, e) in enumerate(zip(gens[name], ex)):
            predictions.append(
                {
                    "condition": name,
                    "id": e.id,
                    "domain": e.domain,
                    "label": e.label,
                    "triggered": bool(preds[name][i]),
                    "call_ok": success[i][0],
                    "why": success[i][1],
                    "output": g.text,
                }
            )
    h = states(ctx, "test")
    dom = params.route(h)
    p = params.p_tool(h, dom)
    rows["probe_only"] = metrics_with_ci(y, (p > 0.5).numpy(), n_boot=c.n_boot, seed=c.seed)
    rows["probe_only"]["auc"] = roc_auc(p, y)
    offline_gate = ternary_gate(p, best["tau"])
    online = conds["asa"].decisions(len(y))["gate"] if "asa" in conds else offline_gate
    diffs = {}
    for metric in ("f1", "fpr", "precision", "recall"):
        d, lo, hi, pval = paired_bootstrap_diff(
            metric, y, preds["baseline"], preds.get("asa", preds["baseline"]), n_boot=c.n_boot, seed=c.seed
        )
        diffs[metric] = {"diff": d, "lo": lo, "hi": hi, "p_value": pval}
    doms = np.array([e.domain for e in ex])
    per_domain = {
        d: {
            name: metrics_with_ci(y[doms == d], preds[name][doms == d], n_boot=c.n_boot, seed=c.seed)
            for name in preds
            if name in ("baseline", "asa", "prefill+cd", "steer+prefill+cd", "oracle", "paper")
        }
        for d in sorted(set(doms))
    }
    chosen_row = asset_row(ctx.result("actions")["chosen"], c.constrain)
    router_acc = float((dom.numpy() == np.array([params.domains.index(e.domain) for e in ex])).mean())
    result = {
        "operating_point": best,
        "paper_point": paper,
        "rows": rows,
        "asa_minus_baseline": diffs,
        "per_domain": per_domain,
        "gate_agreement_online_vs_offline": float((online == offline_gate).float().mean()),
        "router_accuracy_test": router_acc,
        "router_accuracy_test_tool": float(
            (dom.numpy() == np.array([params.domains.index(e.domain) for e in ex]))[y == 1].mean()
        ),
        "gate_counts_test": {str(int(g)): int((offline_gate == g).sum()) for g in (-1, 0, 1)},
        "n_test": int(len(y)),
        # the row whose operating point the asset carries (what AsaSteerer, serve and BFCL run)
        "asset_row": chosen_row,
        "per_kind": per_kind(preds, y, data.kinds("test"), ("baseline", "asa", chosen_row, "paper"), c),
    }
    save_json(ctx.out / "metrics.json", result)
    with open(ctx.out / "predictions.jsonl", "w") as f:
        for row in predictions:
            f.write(json.dumps(row) + "\n")
    _plot(result, ctx.out)
    return result


def per_kind(preds: dict, y: np.ndarray, kinds: np.ndarray, names: tuple, c: object) -> dict:
    """Trigger metrics of the key rows per example kind (``single`` prompts, ``conversation``s ending in a tool
    result); for conversations also the extra-call rate: label-0 conversations (the answer was due) whose reply
    opened a call."""
    out: dict = {}
    for kind in sorted(set(kinds)):
        mask = kinds == kind
        out[kind] = {"n": int(mask.sum())}
        for name in dict.fromkeys(names):
            if name not in preds:
                continue
            m = metrics_with_ci(y[mask], preds[name][mask], n_boot=c.n_boot, seed=c.seed)
            due = mask & (y == 0)
            if kind == "conversation" and due.any():
                m["extra_call_rate"] = bootstrap_mean(
                    preds[name][due].astype(float), n_boot=c.n_boot, seed=c.seed
                )
                m["n_answer_due"] = int(due.sum())
            out[kind][name] = m
    return out


def _paper(ctx: StageContext, lm: object, params: object, point: dict) -> object:
    """The paper's row: mean-difference direction, +push when the gate opens and -push when it closes."""
    c = ctx.config
    return OperatingPoint(
        layer=point["layer"],
        strength=point["strength"],
        tau=point["tau"],
        beta=point["beta"],
        site=c.site,
        direction="asa",
        action="steer",
        on_close="push",
        constrain="none",
        trigger_mode=c.trigger_mode,
        call_format=c.call_format,
    ).bind(lm, params)


def asset_row(action: str, constrain: str) -> str:
    """The evaluate row that runs the asset's operating point (its action and call constraint)."""
    name = {"steer": "asa", "prefill": "prefill", "steer+prefill": "steer+prefill"}[action]
    if constrain == "none":
        return name
    return ("steer" if action == "steer" else name) + ("+cd" if constrain != "model" else "+cd_model")


def _plot(result: dict, out: object) -> None:
    from ..eval.plots import bar_with_ci, grouped_bars_with_ci

    names = list(result["rows"])
    f1 = [result["rows"][n]["f1"] for n in names]
    bar_with_ci(
        names,
        [v[0] for v in f1],
        [v[1] for v in f1],
        [v[2] for v in f1],
        out / "f1_by_condition.png",
        title="TEST trigger F1 by condition (95% bootstrap CI)",
        ylabel="F1",
    )
    doms = list(result["per_domain"])
    groups = {}
    for name in ("baseline", "asa", "prefill+cd", "paper"):
        if all(name in result["per_domain"][d] for d in doms):
            vals = [result["per_domain"][d][name]["f1"] for d in doms]
            groups[name] = ([v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals])
    grouped_bars_with_ci(
        doms, groups, out / "f1_by_domain.png", title="TEST trigger F1 by domain", ylabel="F1"
    )


def stage_baselines(ctx: StageContext) -> dict:
    """TEST with the few-shot prompts a user would try instead of steering (no gate, no steering)."""
    c, lm, data = ctx.config, ctx.lm, inputs(ctx)
    ex, y = data.examples["test"], data.labels("test")
    rows = {}
    for name in c.baselines:
        gens = generate_conditions(
            lm,
            data.messages("test", few_shot=name),
            {"plain": None},
            data.call_options(ctx.progress, f"few-shot {name} (TEST)"),
        )["plain"]
        m, trig, _ = _row_metrics(gens, ex, y, c, data)
        m["n_shots"] = len(data.builder(name).few_shot)
        rows[f"shots:{name}"] = m
    return {"rows": rows}
