"""A learning curve for a user's own tools: TEST F1 and false-call rate against the number of labelled examples per
tool, label and split.

For each size N, the CAL, TRAIN and VALID splits keep their first N prompts per (domain, label) in file order and TEST
is kept whole; the pipeline runs on that data up to the evaluate stage (and the asset), in its own run directory,
with every other setting of the config. The row reported is the one whose operating point the asset carries.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..base.files import atomic_path, atomic_write
from ..config import UserError
from ..eval.stats import ci_text
from ..runs import save_json
from .data import SPLITS, load_examples


def subset_jsonl(source: str, n: int, dest: Path) -> Path:
    """``source`` with CAL/TRAIN/VALID cut to their first ``n`` prompts per (domain, label); TEST whole."""
    load_examples(source)  # the whole file is checked first (splits, labels, domains)
    seen: dict[tuple, int] = defaultdict(int)
    lines = []
    for line in Path(source).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        key = (row["split"], row["domain"], row["label"])
        if row["split"] != "test":
            if seen[key] >= n:
                continue
            seen[key] += 1
        lines.append(json.dumps(row, ensure_ascii=False))
    dest.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(dest, "\n".join(lines) + "\n")


def run_curve(
    cfg: object,
    sizes: list[int],
    out: str | Path,
    runs: str | Path | None = None,
    progress: bool = True,
    models: object = None,
) -> dict:
    """Fit and evaluate the pipeline once per size (run directories ``runs``/nN, default ``out``/nN); curve.json,
    curve.md and curve.png under ``out``."""
    from .stages import runner

    if cfg.data == "builtin":
        raise UserError(
            "a learning curve is for your own data: give --data my.jsonl (with splits) and --tools"
        )
    if not sizes or any(n < 2 for n in sizes):
        raise UserError(f"sizes must be integers >= 2 (prompts per tool, label and split), got {sizes}")
    out = Path(out)
    runs = Path(runs) if runs is not None else out
    rows = []
    for n in sorted(set(sizes)):
        data = subset_jsonl(cfg.data, n, runs / f"n{n}" / "data.jsonl")
        c = type(cfg).from_dict(
            {**cfg.to_dict(), "data": str(data), "out": str(runs / f"n{n}"), "limit_per_cell": None}
        )
        r = runner(c, progress=progress, models=models)
        ev = r.run("evaluate")
        r.run("asset")
        name = ev["asset_row"]
        m = ev["rows"][name]
        gate = r.result("gate")["chosen"]
        counts = {s: len(v) for s, v in load_examples(str(data)).items()}
        rows.append(
            {
                "per_cell": n,
                "row": name,
                "gate": gate["kind"],
                "valid_f1": gate["f1"],
                "valid_fpr": gate["fpr"],
                "f1": m["f1"],
                "fpr": m["fpr"],
                "precision": m["precision"],
                "recall": m["recall"],
                "success_precision": m.get("success_precision"),
                "n": counts,
                "run": f"n{n}",
            }
        )
        # models loaded by the first run are reused by the next
        models = r.models
    res = {"data": cfg.data, "tools": cfg.tools, "model": cfg.model, "splits": list(SPLITS), "points": rows}
    write_curve(res, out)
    return res


def curve_markdown(res: dict) -> str:
    lines = [
        f"# Learning curve: `{res['model']}` on `{res['data']}` (tools `{res['tools']}`)",
        "",
        "Per size: CAL, TRAIN and VALID keep their first N prompts per (tool, label); TEST is whole and was written "
        "apart from the fit prompts. The row is the asset's operating point on TEST, by generation (95% bootstrap "
        "intervals); the gate is chosen on VALID.",
        "",
        "| prompts per tool, label and split | gate (VALID) | VALID F1 / FPR | TEST F1 | TEST FPR | precision | recall "
        "| call success precision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in res["points"]:
        sp = "–" if p["success_precision"] is None else f"{p['success_precision']:.3f}"
        lines.append(
            f"| {p['per_cell']} | {p['gate']} | {p['valid_f1']:.3f} / {p['valid_fpr']:.3f} | {ci_text(p['f1'])} | "
            f"{ci_text(p['fpr'])} | {ci_text(p['precision'])} | {ci_text(p['recall'])} | {sp} |"
        )
    return "\n".join(lines)


def write_curve(res: dict, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {"json": save_json(out / "curve.json", res)}
    paths["md"] = atomic_write(out / "curve.md", curve_markdown(res) + "\n")
    xs = [p["per_cell"] for p in res["points"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, label in (("f1", "TEST F1"), ("fpr", "TEST false-call rate")):
        v = [p[key] for p in res["points"]]
        ax.errorbar(
            xs,
            [x[0] for x in v],
            yerr=[[max(0.0, x[0] - x[1]) for x in v], [max(0.0, x[2] - x[0]) for x in v]],
            marker="o",
            capsize=4,
            label=label,
        )
    ax.set_xlabel("labelled prompts per tool, label and split")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(xs)
    ax.legend()
    ax.set_title("Own tools: TEST F1 and false calls vs examples (95% CI)")
    png = out / "curve.png"
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    paths["png"] = png
    return paths
