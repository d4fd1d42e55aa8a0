"""Markdown tables and plots of a tool-use transcoder run (the study's report stage)."""

from __future__ import annotations

from pathlib import Path

from ..runs import save_csv
from ..stages import StageContext

SUBSETS = ("tool", "ood", "copy")


def _num(m: dict, key: str) -> str:
    """A splice statistic, or a dash where no transcoder was spliced."""
    return f"{m[key]:.2f}" if key in m else "–"


def _ci(v: list | tuple, pct: bool = True) -> str:
    f = (lambda x: f"{x:.2f}") if pct else (lambda x: f"{x:.3f}")
    return f"{f(v[0])} [{f(v[1])}, {f(v[2])}]"


def _learned(ft: dict) -> bool:
    return ft["after"]["tool"]["tool_call_rate"][0] > 0


def write_report(ctx: StageContext) -> Path:
    from ..eval.plots import grouped_bars_with_ci, line_sweep, scatter_highlight

    root = ctx.out
    cfg = ctx.runner.config.to_dict()
    lines = [f"# Tool-use transcoder study: {cfg['model']}, layer {cfg['layer']}", ""]
    ft = ctx.result("finetune")
    if not _learned(ft):
        lines += [
            "> **The finetune did not learn the calculator call** (tool_call_rate 0 on tool prompts after the LoRA), "
            "so every splice condition below compares models that never call: the zeros are not a finding. Give "
            "the LoRA more examples or steps (the quick instance is a smoke test).",
            "",
        ]
    lines += [
        f"## LoRA finetune ({cfg['lora_targets']} projections, layers {cfg['lora_layers'] or 'all'}, "
        f"rank {cfg['lora_rank']}, {ft['n_examples']} examples, {ft['steps']} steps)",
        "",
        "| subset | tool_call_rate before | after | valid format after | math correct after | "
        "copy exact before | after |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in SUBSETS:
        b, a = ft["before"][s], ft["after"][s]
        copy = (
            f"{_ci(b['copy_exact_rate'])} | {_ci(a['copy_exact_rate'])}"
            if "copy_exact_rate" in a
            else "– | –"
        )
        lines.append(
            f"| {s} | {_ci(b['tool_call_rate'])} | {_ci(a['tool_call_rate'])} | "
            f"{_ci(a['valid_tool_format_rate'])} | {_ci(a['math_correct_rate'])} | {copy} |"
        )
    lines.append("")
    b = ctx.result("base")
    lines += [
        "## Base transcoder (trained on the base model), spliced into the base model",
        "",
        f"Held-out calculator conversations ({b['n_eval_tokens']} tokens): CE {b['ce_raw']:.3f} -> "
        f"{b['ce_spliced']:.3f} nats/token, increase {_ci(b['ce_increase'], False)}; "
        f"L0 {b['l0']:.1f}, train NMSE {b['train_nmse']:.3f}.",
        "",
    ]
    ev = ctx.result("evaluate")
    conds = ev["conditions"]
    lines += [
        "## Splice conditions on the finetuned model (held-out, 95% intervals)",
        "",
        "| condition | subset | tool_call_rate | valid format | math correct | copy exact | completion CE | "
        "mean abs base acts | mean abs delta acts | delta L0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in SUBSETS:
        m = ev["base_model_no_splice"][s]
        lines.append(
            f"| base model (no splice) | {s} | {_ci(m['tool_call_rate'])} | {_ci(m['valid_tool_format_rate'])} "
            f"| {_ci(m['math_correct_rate'])} | {_ci(m['copy_exact_rate']) if 'copy_exact_rate' in m else '–'} "
            "| – | – | – | – |"
        )
    for name, r in conds.items():
        for s in SUBSETS:
            m = r["subsets"][s]
            lines.append(
                f"| {name} | {s} | {_ci(m['tool_call_rate'])} | {_ci(m['valid_tool_format_rate'])} | "
                f"{_ci(m['math_correct_rate'])} | "
                f"{_ci(m['copy_exact_rate']) if 'copy_exact_rate' in m else '–'} | {_ci(m['ce'], False)} | "
                f"{_num(m, 'mean_abs_base_acts')} | {_num(m, 'mean_abs_delta_acts')} | {_num(m, 'delta_l0')} |"
            )
    lines.append("")
    save_csv(root / "conditions.csv", _condition_rows(ev))
    names = list(conds)
    for metric, fname in (("tool_call_rate", "tool_call_rate.png"), ("copy_exact_rate", None)):
        if fname is None:
            continue
        series = {}
        for s in SUBSETS:
            vals = [conds[n]["subsets"][s][metric] for n in names]
            series[s] = ([v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals])
        grouped_bars_with_ci(
            [n.replace(" (", "\n(").replace(" + ", "\n+ ") for n in names],
            series,
            root / fname,
            title=f"Tool-call rate on the finetuned model, MLP {cfg['layer']} spliced",
            ylabel="tool_call_rate",
        )
    scales = sorted(r["scale"] for r in conds.values() if r["transcoder"] in ("base", "delta"))
    by_scale = {r["scale"]: r for r in conds.values() if r["transcoder"] in ("base", "delta")}
    series = {
        f"{s}: tool_call_rate": [by_scale[a]["subsets"][s]["tool_call_rate"][0] for a in scales]
        for s in SUBSETS
    }
    series["copy: copy_exact_rate"] = [by_scale[a]["subsets"]["copy"]["copy_exact_rate"][0] for a in scales]
    line_sweep(
        scales,
        series,
        root / "delta_scale_sweep.png",
        title="base + scale * delta on the finetuned model",
        xlabel="delta scale",
        ylabel="rate",
    )
    lines += ["![tool-call rate](tool_call_rate.png) ![delta scale sweep](delta_scale_sweep.png)", ""]
    at = ctx.result("attribute")
    lines += [
        "## Delta latents at the decision token",
        "",
        f"Top {len(at['top_latents'])} latents by (mean act on tool - copy prompts), ranked on TRAIN prompts; "
        "log P(tool marker) at the decision token on held-out prompts with the full delta (scale 1): "
        f"tool {at['logp_marker_full_delta']['tool']:.2f}, copy {at['logp_marker_full_delta']['copy']:.2f}.",
        "",
        "| latent | fire rate tool | fire rate ood | fire rate copy | logP(marker) tool, latent ablated | "
        "logP(marker) copy, latent ablated |",
        "|---|---|---|---|---|---|",
    ]
    per = {p["latent"]: p for p in at["per_latent"]}
    for a in at["single_ablations"]:
        p = per[a["latent"]]
        lines.append(
            f"| {a['latent']} | {p['fire_rate_tool']:.2f} | {p['fire_rate_ood']:.2f} | {p['fire_rate_copy']:.2f} "
            f"| {a['logp_marker_tool']:.2f} | {a['logp_marker_copy']:.2f} |"
        )
    lines += [
        "",
        "| joint ablation | tool_call_rate tool | tool_call_rate copy | logP(marker) tool |",
        "|---|---|---|---|",
    ]
    for name, j in at["joint"].items():
        g = j["generation"]
        lines.append(
            f"| {name} | {_ci(g['tool']['tool_call_rate'])} | {_ci(g['copy']['tool_call_rate'])} | "
            f"{j['logp_marker']['tool']:.2f} |"
        )
    lines.append("")
    save_csv(root / "latents.csv", at["per_latent"])
    pl = at["per_latent"]
    scatter_highlight(
        [p["mean_act_copy"] for p in pl],
        [p["mean_act_tool"] for p in pl],
        root / "latents.png",
        highlight=[p["latent"] for p in pl if p["latent"] in set(at["top_latents"])],
        title="Delta latents at the decision token (held-out): mean activation, tool vs copy prompts; "
        "red = top by TRAIN tool - copy",
        xlabel="mean act on copy prompts",
        ylabel="mean act on tool prompts",
    )
    lines += ["![delta latents](latents.png)", ""]
    out = root / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _condition_rows(ev: dict) -> list[dict]:
    """One CSV row per condition and subset: each metric's mean and 95% interval as three columns."""
    conds = {
        "base model (no splice)": {"transcoder": "none", "scale": 0.0, "subsets": ev["base_model_no_splice"]},
        **ev["conditions"],
    }
    rows = []
    for name, r in conds.items():
        for s in SUBSETS:
            row: dict = {"condition": name, "transcoder": r["transcoder"], "scale": r["scale"], "subset": s}
            for k, v in r["subsets"][s].items():
                if isinstance(v, list | tuple):
                    row.update({k: v[0], f"{k}_lo": v[1], f"{k}_hi": v[2]})
                else:
                    row[k] = v
            rows.append(row)
    return rows
