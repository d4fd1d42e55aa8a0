"""Markdown tables and plots of a tool-use transcoder run (``steerlab sae report``)."""

from __future__ import annotations

from pathlib import Path

from ..runs import load_json

SUBSETS = ("tool", "ood", "copy")


def _ci(v: list | tuple, pct: bool = True) -> str:
    f = (lambda x: f"{x:.2f}") if pct else (lambda x: f"{x:.3f}")
    return f"{f(v[0])} [{f(v[1])}, {f(v[2])}]"


def write_report(root: str | Path) -> Path:
    from ..eval.plots import grouped_bars_with_ci, line_sweep

    root = Path(root)
    cfg = load_json(root / "config.json")
    lines = [f"# Tool-use transcoder study: {cfg['model']}, layer {cfg['layer']}", ""]
    ft_path = root / "finetune" / "finetune.json"
    if ft_path.is_file():
        ft = load_json(ft_path)
        lines += [
            f"## LoRA finetune ({cfg['lora_targets']} projections, layers {cfg['lora_layers'] or 'all'}, "
            f"rank {cfg['lora_rank']}, {ft['n_examples']} examples, {ft['steps']} steps)",
            "",
            "| subset | tool_call_rate before | after | valid format after | math correct after |",
            "|---|---|---|---|---|",
        ]
        for s in SUBSETS:
            b, a = ft["before"][s], ft["after"][s]
            lines.append(
                f"| {s} | {_ci(b['tool_call_rate'])} | {_ci(a['tool_call_rate'])} | "
                f"{_ci(a['valid_tool_format_rate'])} | {_ci(a['math_correct_rate'])} |"
            )
        lines.append("")
    base_path = root / "base" / "base.json"
    if base_path.is_file():
        b = load_json(base_path)
        lines += [
            "## Base transcoder (trained on the base model), spliced into the base model",
            "",
            f"Held-out calculator conversations ({b['n_eval_tokens']} tokens): CE {b['ce_raw']:.3f} -> "
            f"{b['ce_spliced']:.3f} nats/token, increase {_ci(b['ce_increase'], False)}; "
            f"L0 {b['l0']:.1f}, train NMSE {b['train_nmse']:.3f}.",
            "",
        ]
    ev_path = root / "evaluate" / "evaluate.json"
    if ev_path.is_file():
        ev = load_json(ev_path)
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
                    f"{m.get('mean_abs_base_acts', 0):.2f} | {m.get('mean_abs_delta_acts', 0):.2f} | "
                    f"{m.get('delta_l0', 0):.2f} |"
                )
        lines.append("")
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
        alphas = sorted(r["alpha"] for r in conds.values() if r["transcoder"] in ("base", "delta"))
        by_alpha = {r["alpha"]: r for r in conds.values() if r["transcoder"] in ("base", "delta")}
        series = {
            f"{s}: tool_call_rate": [by_alpha[a]["subsets"][s]["tool_call_rate"][0] for a in alphas]
            for s in SUBSETS
        }
        series["copy: copy_exact_rate"] = [
            by_alpha[a]["subsets"]["copy"]["copy_exact_rate"][0] for a in alphas
        ]
        line_sweep(
            alphas,
            series,
            root / "alpha_sweep.png",
            title="base + alpha * delta on the finetuned model",
            xlabel="alpha",
            ylabel="rate",
        )
        lines += ["![tool-call rate](tool_call_rate.png) ![alpha sweep](alpha_sweep.png)", ""]
    at_path = root / "attribute" / "attribute.json"
    if at_path.is_file():
        at = load_json(at_path)
        lines += [
            "## Delta latents at the decision token",
            "",
            f"Top {len(at['top_latents'])} latents by (mean act on tool - copy prompts), ranked on TRAIN prompts; "
            "log P(tool marker) at the decision token on held-out prompts with the full delta (alpha=1): "
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
    out = root / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
