"""The run's markdown report: what was chosen on VALID and what it gave on TEST, with intervals."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..stages import StageContext

ROW_DOC = {
    "baseline": "no steering",
    "asa": "ASA: probe-gated ±strength·unit(v_domain+β·v_global) at the last prompt token",
    "no_gate": "always + (no gate)",
    "global_only": "gated, global vector only",
    "domain_only": "gated, domain vector only (β=0)",
    "random": "gated, random unit direction of the same strength",
    "negative": "gated, −direction",
    "oracle": "gate from the true label (+ for tool, − for non-tool)",
    "probe_only": "the probe's p>0.5 as the decision (no generation)",
}


def _ci(v: list | tuple) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _precision(m: dict) -> str:
    """Precision is undefined when nothing was triggered."""
    return _ci(m["precision"]) if m.get("tp", 0) + m.get("fp", 0) else "undefined (no calls)"


def eval_table(ev: dict) -> str:
    head = "| condition | F1 | precision | recall | FPR | accuracy | success precision | what it is |\n"
    head += "|---|---|---|---|---|---|---|---|\n"
    lines = []
    for name, m in ev["rows"].items():
        sp = m.get("success_precision")
        sp = "–" if "success_precision" not in m else ("undefined (no calls)" if sp is None else f"{sp:.3f}")
        lines.append(
            f"| {name} | {_ci(m['f1'])} | {_precision(m)} | {_ci(m['recall'])} | {_ci(m['fpr'])} "
            f"| {_ci(m['accuracy'])} | {sp} | {ROW_DOC.get(name, '')} |"
        )
    return head + "\n".join(lines)


def domain_table(ev: dict) -> str:
    head = (
        "| domain | baseline F1 | ASA F1 | oracle F1 | baseline FPR | ASA FPR |\n|---|---|---|---|---|---|\n"
    )
    lines = []
    for d, rows in ev["per_domain"].items():
        lines.append(
            f"| {d} | {_ci(rows['baseline']['f1'])} | {_ci(rows['asa']['f1'])} | {_ci(rows['oracle']['f1'])} "
            f"| {_ci(rows['baseline']['fpr'])} | {_ci(rows['asa']['fpr'])} |"
        )
    return head + "\n".join(lines)


def goal_line(ev: dict) -> str:
    d = ev["asa_minus_baseline"]
    f1, fpr = d["f1"], d["fpr"]
    met = f1["diff"] >= 0.15 and fpr["diff"] <= 0.02
    return (
        f"ASA − baseline on TEST: ΔF1 = {f1['diff']:+.3f} [{f1['lo']:+.3f}, {f1['hi']:+.3f}] (p={f1['p_value']:.3g}), "
        f"ΔFPR = {fpr['diff']:+.3f} [{fpr['lo']:+.3f}, {fpr['hi']:+.3f}] (p={fpr['p_value']:.3g}). "
        f"Goal (ΔF1 ≥ +0.15 and ΔFPR ≤ +0.02): **{'met' if met else 'missed'}**."
    )


def write_report(ctx: StageContext) -> Path:
    """report.md in the report stage's folder, from the results of sweep, tune, evaluate and asset."""
    c = ctx.config
    sweep, tune, ev, asset = (ctx.result(s) for s in ("sweep", "tune", "evaluate", "asset"))
    seconds = sum(
        ctx.runner.marker(s)["seconds"] for s in ("extract", "sweep", "vectors", "fit", "tune", "evaluate")
    )
    best = tune["best"]
    aucs = sweep["auc_valid"]
    lines = [
        f"# ASA run on `{ctx.runner.config.model}`",
        "",
        f"steerlab {__version__}; data `{c.data}`"
        + (f" (reduced: {c.limit_per_cell} per split×domain×label)" if c.limit_per_cell else "")
        + f"; TEST n={ev['n_test']}; {seconds / 60:.1f} min of stage computation.",
        "",
        "## Operating point (chosen on VALID by the F1 of generated outputs)",
        "",
        f"- layer L*={best['layer']} (candidates {tune['layers']}; best-AUC layer {sweep['best_auc_layer']} with "
        f"VALID AUC {aucs[str(sweep['best_auc_layer'])]:.3f}; AUC at L* {aucs[str(best['layer'])]:.3f})",
        f"- strength={best['strength']} × mean hidden norm, τ={best['tau']}, β={best['beta']}",
        f"- VALID: baseline F1 {tune['baseline_valid']['f1']:.3f} / FPR {tune['baseline_valid']['fpr']:.3f} → "
        f"ASA F1 {best['f1']:.3f} / FPR {best['fpr']:.3f}; {tune['selection']}",
        "",
        "## TEST (95% bootstrap intervals; every row but probe_only is real greedy generation)",
        "",
        eval_table(ev),
        "",
        goal_line(ev),
        "",
        f"Router accuracy on TEST {ev['router_accuracy_test']:.3f}; gate counts (−1/0/+1) "
        f"{ev['gate_counts_test']}; online gate = offline gate on {100 * ev['gate_agreement_online_vs_offline']:.1f}% "
        "of TEST prompts.",
        "",
        "### By domain",
        "",
        domain_table(ev),
        "",
        f"Asset: `{asset['path']}` ({asset['bytes']:,} bytes, safetensors + JSON).",
        "",
        "Plots: `sweep/probe_auc.png`, `tune/strength_tau_f1.png`, `tune/layer_f1.png`, "
        "`evaluate/f1_by_condition.png`, `evaluate/f1_by_domain.png`.",
    ]
    path = ctx.out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
