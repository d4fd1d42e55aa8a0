"""Issue 21's transfer summary, read from the three commands' result files (nothing typed by hand): BFCL
(`steerlab bfcl eval`'s bfcl.json), leave-one-domain-out (`steerlab asa lodo`'s lodo.json) and the own-tools
learning curve (`steerlab asa curve`'s curve.json), each against the issue's goals; a second model's run is
summarised from its report when given.

Run (the committed summary): ``.venv/bin/python scripts/transfer_report.py --intro docs/results/transfer/intro.md
--bfcl docs/results/transfer/bfcl200 --lodo docs/results/transfer/lodo --curve docs/results/own-tools-curve --note
docs/results/transfer/gemma_note.md --out docs/results/transfer/transfer-smollm2-135m.md``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steerlab.base.files import atomic_write

CALL_CATS = ("simple_python", "multiple", "live_simple", "live_multiple")
FALSE_CALL_GOALS = {"irrelevance": 0.20, "live_irrelevance": 0.30}
AST_GOALS = {"simple_python": 0.45, "live_simple": 0.30}


def _ci(v: list) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def bfcl_lines(path: Path) -> list[str]:
    res = json.loads((path / "bfcl.json").read_text())
    cats, asa = res["categories"], "asa"
    sizes = ", ".join(
        f"{c} {v['n']}" + (" (all)" if v["n"] == v["of"] else f" of {v['of']}")
        for c, v in res["sizes"].items()
    )
    lines = [
        f"## BFCL (`steerlab bfcl eval`, {path}/bfcl.md)",
        "",
        f"Items per category: {sizes}. The asset's gate was fitted on: "
        f"{', '.join(res.get('asset', {}).get('gate_fit_sources', [])) or 'the run data alone'} (never on a "
        "category reported here; `bfcl eval` refuses one).",
        "",
        "| goal | measured (asset) | plain model | verdict |",
        "|---|---|---|---|",
    ]
    for cat, goal in FALSE_CALL_GOALS.items():
        if cat in cats:
            m, b = cats[cat][asa]["trigger_rate"], cats[cat]["baseline"]["trigger_rate"]
            lines.append(
                f"| {cat} false-call rate <= {goal} | {_ci(m)} | {_ci(b)} | {_verdict(m[0] <= goal)} |"
            )
    for cat in CALL_CATS:
        if cat in cats:
            m, b = cats[cat][asa]["trigger_rate"], cats[cat]["baseline"]["trigger_rate"]
            lines.append(f"| {cat} trigger rate >= 0.80 | {_ci(m)} | {_ci(b)} | {_verdict(m[0] >= 0.80)} |")
    for cat, goal in AST_GOALS.items():
        if cat in cats:
            m, b = cats[cat][asa]["ast_accuracy"], cats[cat]["baseline"]["ast_accuracy"]
            lines.append(f"| {cat} AST accuracy >= {goal} | {_ci(m)} | {_ci(b)} | {_verdict(m[0] >= goal)} |")
    fails = res.get("ast_failures", {})
    if fails:
        lines += ["", "Where the asset's triggered calls failed the AST check (counts):", ""]
        kinds = sorted({k for c in fails.values() for k in c.get(asa, {})})
        lines += ["| category | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        for cat, rows in fails.items():
            lines.append(f"| {cat} | " + " | ".join(str(rows.get(asa, {}).get(k, 0)) for k in kinds) + " |")
    return lines


def lodo_lines(path: Path) -> list[str]:
    res = json.loads((path / "lodo.json").read_text())
    lines = [
        f"## Leave one domain out (`steerlab asa lodo`, {path}/lodo.md)",
        "",
        f"Operating point layer {res['layer']}, tau {res['tau']}, action `{res['action']}`; the gate chosen on the "
        "other domains' VALID rows, the held-out domain's TEST prompts generated.",
        "",
        "| held-out domain | chosen gate | TEST F1 | TEST FPR | goal F1 >= 0.85 and FPR <= 0.10 |",
        "|---|---|---|---|---|",
    ]
    for d, f in res["folds"].items():
        name, row = next((n, r) for n, r in f["rows"].items() if r["chosen"])
        ok = row["f1"][0] >= 0.85 and row["fpr"][0] <= 0.10
        lines.append(f"| {d} | {name} | {_ci(row['f1'])} | {_ci(row['fpr'])} | {_verdict(ok)} |")
    if "chosen" in res["pooled"]:
        m = res["pooled"]["chosen"]
        ok = m["f1"][0] >= 0.85 and m["fpr"][0] <= 0.10
        lines.append(f"| pooled | chosen | {_ci(m['f1'])} | {_ci(m['fpr'])} | {_verdict(ok)} |")
    return lines


def curve_lines(path: Path) -> list[str]:
    res = json.loads((path / "curve.json").read_text())
    lines = [
        f"## Your own tools (`steerlab asa curve`, {path}/curve.md)",
        "",
        f"Tools `{res['tools']}`, data `{res['data']}`; TEST is the set's unseen prompts.",
        "",
        "| prompts per tool, label and split | gate | TEST F1 | TEST FPR | goal (<= 12 per cell): F1 >= 0.90, FPR <= 0.05 |",
        "|---|---|---|---|---|",
    ]
    for p in res["points"]:
        ok = p["f1"][0] >= 0.90 and p["fpr"][0] <= 0.05
        verdict = (
            _verdict(ok)
            if p["per_cell"] <= 12
            else ("(above the goal's size) " + ("met" if ok else "missed"))
        )
        lines.append(f"| {p['per_cell']} | {p['gate']} | {_ci(p['f1'])} | {_ci(p['fpr'])} | {verdict} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bfcl", type=Path)
    ap.add_argument("--lodo", type=Path)
    ap.add_argument("--curve", type=Path)
    ap.add_argument("--intro", type=Path, help="a markdown file placed after the title (how the asset was made)")
    ap.add_argument("--note", action="append", default=[], help="a markdown file appended as it is")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    lines = [
        "# Transfer of the ASA gate (issue 21)",
        "",
        "Generated by `scripts/transfer_report.py` from the result files named in each section.",
    ]
    if args.intro is not None:
        lines += ["", args.intro.read_text().strip()]
    for path, fn in ((args.bfcl, bfcl_lines), (args.lodo, lodo_lines), (args.curve, curve_lines)):
        if path is not None:
            lines += ["", *fn(path)]
    for note in args.note:
        lines += ["", Path(note).read_text().strip()]
    atomic_write(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
