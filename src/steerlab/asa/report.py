"""The run's markdown report: what was chosen on VALID (and by which rule) and what it gave on TEST, with
intervals, the goals checked against absolute figures, and the measurements that locate a miss."""

from __future__ import annotations

import math
from pathlib import Path

from .. import __version__
from ..eval.stats import ci_text
from ..stages import StageContext
from .evaluation import ROW_DOC
from .gate_stage import gate_lines
from .tuning import direction_of

GATED = ("asa", "steer+cd", "prefill", "prefill+cd", "prefill+cd_model", "steer+prefill+cd")


def _ci(v: list | tuple) -> str:
    if v is None or (isinstance(v[0], float) and math.isnan(v[0])):
        return "undefined"
    return ci_text(v)


def _precision(m: dict) -> str:
    """Precision is undefined when nothing was triggered."""
    return _ci(m["precision"]) if m.get("tp", 0) + m.get("fp", 0) else "undefined (no calls)"


def _sp(m: dict) -> str:
    sp = m.get("success_precision", "–")
    if m.get("calls_decoded") is False:
        return "– (trigger only)"
    return "–" if sp == "–" else ("undefined (no calls)" if sp is None else f"{sp:.3f}")


def eval_table(rows: dict) -> str:
    head = "| condition | F1 | precision | recall | FPR | accuracy | success precision | what it is |\n"
    head += "|---|---|---|---|---|---|---|---|\n"
    lines = []
    for name, m in rows.items():
        lines.append(
            f"| {name} | {_ci(m['f1'])} | {_precision(m)} | {_ci(m['recall'])} | {_ci(m['fpr'])} "
            f"| {_ci(m['accuracy'])} | {_sp(m)} | {ROW_DOC.get(name, _baseline_doc(name, m))} |"
        )
    return head + "\n".join(lines)


def _baseline_doc(name: str, m: dict) -> str:
    if name.startswith("shots:"):
        return f"few-shot prompt '{name[6:]}' ({m.get('n_shots', '?')} turns), no steering"
    if name == "lora":
        return (
            f"LoRA rank {m['rank']} on {m['n_train']} CAL+TRAIN prompts ({m['steps']} steps, loss "
            f"{m['loss_first']:.2f} → {m['loss_last']:.2f}), no gate"
        )
    return ""


def domain_table(ev: dict) -> str:
    names = [
        n
        for n in ("baseline", "asa", "prefill+cd", "steer+prefill+cd", "oracle", "paper")
        if all(n in r for r in ev["per_domain"].values())
    ]
    head = "| domain | " + " | ".join(f"{n} F1" for n in names) + " | baseline FPR | asa FPR |\n"
    head += "|---" * (len(names) + 3) + "|\n"
    lines = []
    for d, rows in ev["per_domain"].items():
        f1s = " | ".join(_ci(rows[n]["f1"]) for n in names)
        asa_fpr = _ci(rows["asa"]["fpr"]) if "asa" in rows else "–"
        lines.append(f"| {d} | {f1s} | {_ci(rows['baseline']['fpr'])} | {asa_fpr} |")
    return head + "\n".join(lines)


def kind_table(ev: dict) -> str:
    """The key rows on single prompts and on conversations that end in a tool result, with the extra-call rate."""
    head = (
        "| examples | condition | F1 | precision | recall | FPR | extra call where the answer was due |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for kind, rows in ev.get("per_kind", {}).items():
        for name, m in rows.items():
            if name == "n":
                continue
            extra = m.get("extra_call_rate")
            extra = f"{_ci(extra)} (n={m['n_answer_due']})" if extra is not None else "–"
            lines.append(
                f"| {kind} (n={rows['n']}) | {name} | {_ci(m['f1'])} | {_precision(m)} | {_ci(m['recall'])} "
                f"| {_ci(m['fpr'])} | {extra} |"
            )
    return head + "\n".join(lines)


def goals(ev: dict, max_fpr: float = 0.05) -> list[str]:
    """The issue's goals on absolute TEST figures (not only deltas), each met or missed."""
    out = []
    rows = ev["rows"]
    if "asa" in rows:
        a = rows["asa"]
        worst = min(ev["per_domain"][d]["asa"]["f1"][0] for d in ev["per_domain"])
        ok = a["f1"][0] >= 0.60 and a["fpr"][0] <= max_fpr and worst >= 0.40
        out.append(
            f"- `asa` (steering): F1 {a['f1'][0]:.3f}, FPR {a['fpr'][0]:.3f}, lowest domain F1 {worst:.3f}; goal F1 ≥ "
            f"0.60, FPR ≤ {max_fpr}, every domain ≥ 0.40: **{'met' if ok else 'missed'}**."
        )
    gated = {n: rows[n] for n in GATED if n in rows}
    if gated:

        def score(m: dict) -> tuple:
            sp = m.get("success_precision") or 0.0
            return (m["fpr"][0] <= max_fpr and m["f1"][0] >= 0.80 and sp >= 0.50, m["f1"][0] + sp)

        name, m = max(gated.items(), key=lambda kv: score(kv[1]))
        sp = m.get("success_precision") or 0.0
        ok = score(m)[0]
        out.append(
            f"- best gated row `{name}`: F1 {m['f1'][0]:.3f}, FPR {m['fpr'][0]:.3f}, success precision {sp:.3f}; goal "
            f"F1 ≥ 0.80, FPR ≤ {max_fpr}, success precision ≥ 0.50: **{'met' if ok else 'missed'}**."
        )
    conv = ev.get("per_kind", {}).get("conversation", {}).get(ev.get("asset_row"), {})
    if "extra_call_rate" in conv:
        x = conv["extra_call_rate"][0]
        out.append(
            f"- the asset's row `{ev['asset_row']}` on conversations ending in a tool result: extra calls where the "
            f"answer was due {x:.3f}, F1 {conv['f1'][0]:.3f}; goal extra calls ≤ 0.05: "
            f"**{'met' if x <= 0.05 else 'missed'}**."
        )
    return out


def write_report(ctx: StageContext) -> Path:
    """report.md in the report stage's folder, from the results of sweep, tune, actions, evaluate and baselines."""
    c = ctx.config
    sweep, vec, tune, act, ev, base, lora, asset = (
        ctx.result(s)
        for s in ("sweep", "vectors", "tune", "actions", "evaluate", "baselines", "lora", "asset")
    )
    stages = (
        "extract",
        "sweep",
        "vectors",
        "fit",
        "screen",
        "tune",
        "gate",
        "actions",
        "evaluate",
        "baselines",
        "lora",
        "asset",
    )
    seconds = sum(ctx.runner.marker(s)["seconds"] for s in stages)
    best, paper = tune["best"], tune["paper"]
    aucs = sweep["auc_valid"]
    vb = tune["baseline_valid"]
    lines = [
        f"# ASA run on `{ctx.runner.config.model}`",
        "",
        f"steerlab {__version__}; data `{c.data}`"
        + (f" (reduced: {c.limit_per_cell} per split×domain×label×kind)" if c.limit_per_cell else "")
        + (
            f" ({c.fraction():g} of every split×domain×label×kind cell; --data-fraction 1 uses all)"
            if c.fraction() < 1
            else ""
        )
        + ("" if c.conversations else "; single prompts only (conversations left out)")
        + f"; TEST n={ev['n_test']}; {seconds / 60:.1f} min of stage computation.",
        "",
        _preset_line(c),
        "",
        "## Operating point (chosen on VALID)",
        "",
        f"- layer L*={best['layer']} (candidates {tune['layers']}; best-AUC layer {sweep['best_auc_layer']}, VALID AUC "
        f"{aucs[str(sweep['best_auc_layer'])]:.3f}; AUC at L* {aucs[str(best['layer'])]:.3f})",
        f"- direction `{direction_of(best)}`"
        + (f" (β={best['beta']:g})" if direction_of(best) == "asa" else "")
        + f", strength {best['strength']:g} × mean hidden norm, τ={best['tau']}; a closed gate forbids the marker",
        f"- VALID: baseline F1 {vb['f1']:.3f} / FPR {vb['fpr']:.3f} → F1 {best['f1']:.3f} / FPR {best['fpr']:.3f}, "
        f"lowest domain F1 {best['min_domain_f1']:.3f}, cross-fit gate FPR on CAL "
        + (f"{best['crossfit_fpr']:.3f}" if best["crossfit_fpr"] is not None else "n/a")
        + f"; {tune['selection']}"
        + ("" if tune["constraints_met"] else " — **no setting met every constraint; the best F1 is shown**"),
        f"- action: `{act['chosen']}` ({act['rule']}; {act['n_rows']} VALID rows: "
        + ", ".join(f"{a} {r['success']}/{act['n_rows']}" for a, r in act["rows"].items())
        + f"); calls constrained: {act['constrain']}",
    ]
    if paper is not None:
        lines.append(
            f"- the paper's setting (row `paper`): layer {paper['layer']}, β={paper['beta']:g}, strength "
            f"{paper['strength']:g}, τ={paper['tau']}, ±push; {tune['paper_selection']}"
        )
    lines += gate_lines(ctx.result("gate"))
    lines += [
        "",
        "## TEST (95% bootstrap intervals; every row but probe_only is real greedy generation)",
        "",
        eval_table({**ev["rows"], **base["rows"], **lora["rows"]}),
        "",
        "Goals on TEST:",
        *goals(ev, c.max_fpr),
        "",
        f"Router accuracy on TEST {ev['router_accuracy_test']:.3f} (tool prompts {ev['router_accuracy_test_tool']:.3f}); "
        f"gate counts (−1/0/+1) {ev['gate_counts_test']}; online gate = offline gate on "
        f"{100 * ev['gate_agreement_online_vs_offline']:.1f}% of TEST prompts. Success precision: the triggered calls "
        "that parse, name the domain's tool and whose arguments validate against its schema.",
        "",
        "### Single prompts and conversations",
        "",
        "Conversations end in a tool result: label 0, the answer is due (one tool's result, or a two-step task's "
        "second); label 1, a two-step task's second call is due. The extra-call rate is the share of label-0 "
        "conversations whose reply opened a call.",
        "",
        kind_table(ev),
        "",
        "### By domain",
        "",
        domain_table(ev),
        "",
        "### Where the push works and where it breaks (VALID, tool prompts, first token)",
        "",
        _edge_table(tune["edge"]),
        "",
        f"Behaviour directions fitted: {', '.join(vec.get('behaviour_kinds', [])) or 'none'}"
        + (
            f" (behav: the plain model called on {vec['behav_called']} of {vec['behav_tool_prompts']} CAL+TRAIN tool "
            "prompts)"
            if "behav_called" in vec
            else ""
        )
        + ".",
        "",
        f"Asset: `{asset['path']}` ({asset['bytes']:,} bytes, safetensors + JSON), action `{asset['action']}`.",
        "",
        "Plots: `sweep/probe_auc.png`, `tune/strength_edge.png`, `tune/strength_tau_f1.png`, "
        "`evaluate/f1_by_condition.png`, `evaluate/f1_by_domain.png`.",
    ]
    path = ctx.out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _preset_line(c: object) -> str:
    """What this run searched and ran (the default job or the whole search)."""
    what = (
        f"layers: the {c.n_top_layers} best by VALID probe AUC; directions {', '.join(c.directions)}; strengths "
        f"{', '.join(f'{s:g}' for s in c.strengths)}; taus {', '.join(f'{t:g}' for t in c.taus)}; actions "
        f"{', '.join(c.actions)} on {c.action_rows} VALID rows; TEST rows '{c.rows}'; few-shot baselines "
        f"{', '.join(c.baselines) or 'none'}; LoRA " + (f"rank {c.lora_rank}" if c.lora_rank else "skipped")
    )
    if c.preset == "full":
        return f"Preset `full` (the whole search): {what}."
    return (
        f"Preset `default` (the main job; `steerlab asa run --full` runs the whole search, every gated action as "
        f"a row, every few-shot baseline and LoRA): {what}."
    )


def _edge_table(edge: dict) -> str:
    strengths = sorted({float(s) for v in edge.values() for s in v})
    head = (
        "| direction | "
        + " | ".join(f"{s:g}" for s in strengths)
        + " |\n"
        + "|---" * (len(strengths) + 1)
        + "|\n"
    )
    return head + "\n".join(
        f"| {k} | " + " | ".join(f"{v.get(f'{s:g}', float('nan')):.2f}" for s in strengths) + " |"
        for k, v in edge.items()
    )
