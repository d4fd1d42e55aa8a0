"""Markdown tables and plots of a tool-use transcoder run (the study's report stage)."""

from __future__ import annotations

from pathlib import Path

from ..runs import save_csv, save_json
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
    layers = [int(k) for k in ctx.result("base")["layers"]]
    lines += _base_section(ctx.result("base"), ctx.result("delta"), cfg)
    ev = ctx.result("evaluate")
    conds = ev["conditions"]
    lines += _conditions_section(ev, cfg["layer"])
    save_csv(root / "conditions.csv", _condition_rows(ev))
    names = list(conds)
    series = {}
    for s in SUBSETS:
        vals = [conds[n]["subsets"][s]["tool_call_rate"] for n in names]
        series[s] = ([v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals])
    grouped_bars_with_ci(
        [n.replace(" (", "\n(").replace(" + ", "\n+ ").replace(" at layer", "\nat layer") for n in names],
        series,
        root / "tool_call_rate.png",
        title=f"Tool-call rate on the finetuned model, MLP {', '.join(map(str, layers))} spliced",
        ylabel="tool_call_rate",
    )
    plots = ["![tool-call rate](tool_call_rate.png)"]
    scaled = {
        r["scale"]: r
        for r in conds.values()
        if r["transcoder"] == "base"
        or (r["transcoder"] == "delta" and sorted(r["delta_layers"]) == sorted(layers))
    }
    if len(scaled) > 2:
        scales = sorted(scaled)
        sweep = {
            f"{s}: tool_call_rate": [scaled[a]["subsets"][s]["tool_call_rate"][0] for a in scales]
            for s in SUBSETS
        }
        sweep["copy: copy_exact_rate"] = [scaled[a]["subsets"]["copy"]["copy_exact_rate"][0] for a in scales]
        line_sweep(
            scales,
            sweep,
            root / "delta_scale_sweep.png",
            title="base + scale * delta on the finetuned model",
            xlabel="delta scale",
            ylabel="rate",
        )
        plots.append("![delta scale sweep](delta_scale_sweep.png)")
    lines += [" ".join(plots), ""]
    if len(layers) > 1:
        lines += _restored_section(conds)
    at = ctx.result("attribute")
    lines += _specificity_section(at)
    save_csv(root / "latents.csv", at["per_latent"])
    pl = at["per_latent"]
    chosen = set(at["specific_set"])
    scatter_highlight(
        [p["auc_train_tool_vs_copy"] for p in pl],
        [p["auc_tool_vs_copy"] for p in pl],
        root / "latents.png",
        highlight=[p["latent"] for p in pl if p["latent"] in chosen],
        title=f"Delta latents at layer {at['layer']}, decision token: AUC tool vs copy on TRAIN vs held-out "
        "prompts; red = the specific set (chosen on TRAIN)",
        xlabel="AUC on TRAIN prompts",
        ylabel="AUC on held-out prompts",
    )
    lines += ["![delta latents](latents.png)", ""]
    summary = delta_summary(ctx.result("delta"), ev, at, cfg)
    save_json(root / "delta_summary.json", summary)
    lines += [
        "## Summary",
        "",
        f"`delta_summary.json`: delta L0 {summary['delta_l0']['train']:.1f} of {summary['d_new']} (train), "
        f"specific set {summary['specific_set']} ({len(summary['specific_set'])} latents); "
        + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in summary["criteria"].items()),
        "",
    ]
    out = root / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _base_section(b: dict, d: dict, cfg: dict) -> list[str]:
    lines = [
        "## Base transcoders (trained on the base model), spliced into the base model",
        "",
        f"Held-out calculator conversations ({b['n_eval_tokens']} tokens), CE without a splice {b['ce_raw']:.3f} "
        f"nats/token. Training pairs: {b['training_pairs']['mode']}, {b['training_pairs']['tokens_captured']} tokens "
        "captured.",
        "",
        "| layer | CE spliced | CE increase [95% CI] | L0 (train) | train NMSE | log-threshold shift |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in b["layers"].items():
        lines.append(
            f"| {k} | {r['ce_spliced']:.3f} | {_ci(r['ce_increase'], False)} | {r['l0']:.1f} | "
            f"{r['train_nmse']:.3f} | {r['threshold_shift']:+.2f} |"
        )
    if b.get("all_layers_together"):
        t = b["all_layers_together"]
        lines.append(f"| all together | {t['ce_spliced']:.3f} | {_ci(t['ce_increase'], False)} | | | |")
    lines += [
        "",
        f"## Delta latents ({cfg['d_new']} per layer, target L0 {cfg['delta_target_l0']}), on TRAIN pairs",
        "",
        "| delta | layer | L0 | NMSE base only | NMSE base + delta | log-threshold shift |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("delta", "control_delta"):
        for k, r in d[name]["layers"].items():
            lines.append(
                f"| {name} (on the {d[name]['trained_on']} model) | {k} | {r['delta_l0']:.1f} | "
                f"{r['nmse_base_only']:.3f} | {r['nmse_with_delta']:.3f} | {r['threshold_shift']:+.2f} |"
            )
    return [*lines, ""]


def _conditions_section(ev: dict, layer: int) -> list[str]:
    lines = [
        "## Splice conditions on the finetuned model (held-out, 95% intervals)",
        "",
        "| condition | subset | tool_call_rate | valid format | math correct | copy exact | completion CE | "
        f"mean abs base acts (layer {layer}) | mean abs delta acts | delta L0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in SUBSETS:
        m = ev["base_model_no_splice"][s]
        lines.append(
            f"| base model (no splice) | {s} | {_ci(m['tool_call_rate'])} | {_ci(m['valid_tool_format_rate'])} "
            f"| {_ci(m['math_correct_rate'])} | {_ci(m['copy_exact_rate']) if 'copy_exact_rate' in m else '–'} "
            "| – | – | – | – |"
        )
    for name, r in ev["conditions"].items():
        for s in SUBSETS:
            m = r["subsets"][s]
            lines.append(
                f"| {name} | {s} | {_ci(m['tool_call_rate'])} | {_ci(m['valid_tool_format_rate'])} | "
                f"{_ci(m['math_correct_rate'])} | "
                f"{_ci(m['copy_exact_rate']) if 'copy_exact_rate' in m else '–'} | {_ci(m['ce'], False)} | "
                f"{_num(m, 'mean_abs_base_acts')} | {_num(m, 'mean_abs_delta_acts')} | {_num(m, 'delta_l0')} |"
            )
    return [*lines, ""]


def _frac(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _restored_section(conds: dict) -> list[str]:
    lines = [
        "## Share of the finetuned behaviour restored (0 = base only at every spliced layer, 1 = finetuned)",
        "",
        "| condition | tool_call_rate, tool | tool_call_rate, ood | completion CE, tool | completion CE, ood |",
        "|---|---|---|---|---|",
    ]
    for name, r in conds.items():
        if r["transcoder"] in ("delta", "control_delta"):
            f = r["restored"]
            lines.append(
                f"| {name} | {_frac(f['tool']['tool_call_rate'])} | {_frac(f['ood']['tool_call_rate'])} | "
                f"{_frac(f['tool']['completion_ce'])} | {_frac(f['ood']['completion_ce'])} |"
            )
    return [*lines, ""]


def _specificity_section(at: dict) -> list[str]:
    per = sorted(at["per_latent"], key=lambda p: -p["auc_tool_vs_copy"])
    lines = [
        f"## Delta latents at layer {at['layer']}, at the decision token",
        "",
        "Per latent: AUC of its activation on tool vs copy prompts (held-out; ties count half) and how often it "
        "fires. Ten best by held-out AUC:",
        "",
        "| latent | AUC tool vs copy | AUC ood vs copy | AUC on TRAIN | fires on tool | ood | copy |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in per[:10]:
        lines.append(
            f"| {p['latent']} | {p['auc_tool_vs_copy']:.2f} | {p['auc_ood_vs_copy']:.2f} | "
            f"{p['auc_train_tool_vs_copy']:.2f} | {p['fire_rate_tool']:.2f} | {p['fire_rate_ood']:.2f} | "
            f"{p['fire_rate_copy']:.2f} |"
        )
    tc = at["train_check"]
    lines += [
        "",
        f"Greedy search on TRAIN prompts (pool: {at['pool']}): the set S grows by the latent that most raises "
        "P(marker | only S kept) - P(marker | S ablated); first-token call rates on the TRAIN search prompts:",
        "",
        "| step | added | only S kept | S ablated |",
        "|---|---|---|---|",
    ]
    for i, st in enumerate(at["search"], 1):
        lines.append(f"| {i} | {st['latent']} | {st['keep_rate']:.2f} | {st['ablate_rate']:.2f} |")
    lines += [
        "",
        f"S = {at['specific_set']} ({'meets' if at['found'] else 'does NOT meet'} the TRAIN criteria; full delta "
        f"{tc['tool_full_delta']:.2f} on tool, copy {tc['copy_full_delta']:.2f} full / "
        f"{tc['copy_only_set_kept']:.2f} with only S kept). Held-out:",
        "",
        "| condition | tool_call_rate tool | ood | copy | logP(marker) tool | copy |",
        "|---|---|---|---|---|---|",
    ]
    for name, h in at["heldout"].items():
        if "generation" not in h:
            lines.append(
                f"| {name} | – | – | – | {h['logp_marker']['tool']:.2f} | {h['logp_marker']['copy']:.2f} |"
            )
            continue
        g = h["generation"]
        lines.append(
            f"| {name} | {_ci(g['tool']['tool_call_rate'])} | {_ci(g['ood']['tool_call_rate'])} | "
            f"{_ci(g['copy']['tool_call_rate'])} | {h['logp_marker']['tool']:.2f} | {h['logp_marker']['copy']:.2f} |"
        )
    return [*lines, ""]


def delta_summary(d: dict, ev: dict, at: dict, cfg: dict) -> dict:
    """The delta's sparsity, its specific set and the tool-call rates that say whether it restores the finetuned
    behaviour, in one small JSON (``delta_summary.json``)."""
    layer = str(at["layer"])
    conds = ev["conditions"]
    full = next(
        n
        for n, r in conds.items()
        if r["transcoder"] == "delta" and r["scale"] == 1.0 and len(r["delta_layers"]) == len(ev["layers"])
    )

    def rates(sub: dict) -> dict:
        return {s: sub[s]["tool_call_rate"][0] for s in SUBSETS}

    ft = rates(conds["finetuned (no splice)"]["subsets"])
    dl = rates(conds[full]["subsets"])
    gen = {k: rates(h["generation"]) for k, h in at["heldout"].items() if "generation" in h}
    l0_train = d["delta"]["layers"][layer]["delta_l0"]
    return {
        "layer": at["layer"],
        "spliced_layers": ev["layers"],
        "d_new": cfg["d_new"],
        "delta_target_l0": cfg["delta_target_l0"],
        "delta_l0": {
            "train": l0_train,
            **{f"heldout_{s}": conds[full]["subsets"][s].get("delta_l0") for s in SUBSETS},
        },
        "specific_set": at["specific_set"],
        "specific_set_found_on_train": at["found"],
        "specific_set_auc_tool_vs_copy": {
            str(p["latent"]): p["auc_tool_vs_copy"]
            for p in at["per_latent"]
            if p["latent"] in at["specific_set"]
        },
        "tool_call_rate": {
            "finetuned": ft,
            "base_only": rates(conds["base only (scale=0)"]["subsets"]),
            "base_plus_delta": dl,
            "only_specific_set_kept": gen.get("only the set kept"),
            "specific_set_ablated": gen.get("the set ablated"),
            "control_delta": rates(conds["base + 1*control delta"]["subsets"]),
        },
        "criteria": {
            "delta_l0_at_most_16": l0_train <= 16,
            "tool_within_0.1_of_finetuned": abs(dl["tool"] - ft["tool"]) <= 0.1,
            "ood_within_0.1_of_finetuned": abs(dl["ood"] - ft["ood"]) <= 0.1,
            "no_spurious_calls_on_copy": dl["copy"] == 0.0,
            "set_kept_restores_tool_within_0.1": gen.get("only the set kept") is not None
            and abs(gen["only the set kept"]["tool"] - ft["tool"]) <= 0.1,
            "set_ablated_removes_tool_calls": gen.get("the set ablated") is not None
            and gen["the set ablated"]["tool"] <= 0.1,
        },
    }


def _condition_rows(ev: dict) -> list[dict]:
    """One CSV row per condition and subset: each metric's mean and 95% interval as three columns."""
    conds = {
        "base model (no splice)": {
            "transcoder": "none",
            "scale": 0.0,
            "delta_layers": [],
            "subsets": ev["base_model_no_splice"],
        },
        **ev["conditions"],
    }
    rows = []
    for name, r in conds.items():
        for s in SUBSETS:
            row: dict = {
                "condition": name,
                "transcoder": r["transcoder"],
                "scale": r["scale"],
                "delta_layers": " ".join(map(str, r["delta_layers"])),
                "subset": s,
            }
            for k, v in r["subsets"][s].items():
                if k == "per_layer":
                    continue
                if isinstance(v, list | tuple):
                    row.update({k: v[0], f"{k}_lo": v[1], f"{k}_hi": v[2]})
                else:
                    row[k] = v
            rows.append(row)
    return rows
