"""Leave one domain out: fit the gate on three domains, test on the fourth's TEST prompts, by generation.

Why: a gate that only knows the domains it was fitted on says nothing about an agent's next tool. Per held-out
domain D, every gate candidate of the run (``gates``) is refitted without D: the per-domain router and probes on the
other domains' CAL+TRAIN prompts; the probe gates on those plus the ``gate_data`` context examples of the other
domains that do not offer D's tool (and the BFCL fit rows, if any). Each is calibrated and chosen on the other domains'
VALID rows, exactly as the ``gate`` stage does, then D's TEST prompts are generated under the run's operating point
(tuned layer, tau, action) with that gate. The run's prompt lists all its tools, D's included, as a user's agent
would once D's tool is added; D's prompts are never seen by the gate.

The run's action must not push (``prefill``): a push would use directions fitted on every domain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import UserError
from ..eval.stats import ci_text, metrics_with_ci
from ..generation import generate_conditions
from ..runs import load_tensors, save_json
from ..stages import Runner
from ..tools import decision_stop, is_triggered
from .controller import AsaParams
from .data import SPLITS
from .fitting import _fit_gate
from .gate_stage import CACHE, choose_gate, chosen_point, gate_sets
from .inputs import AsaInputs
from .tuning import point_of


def run_lodo(r: Runner, out: str | Path, progress: bool = True) -> dict:
    """Per held-out domain: each gate kind's VALID-best candidate and the chosen gate, on that domain's TEST."""
    c, out = r.config, Path(out)
    for stage in ("extract", "sweep", "vectors", "fit", "tune", "gate", "actions"):
        r.run(stage)
    action = r.result("actions")["chosen"]
    if "steer" in action:
        raise UserError(
            f"leave-one-domain-out measures the gate; the run's action {action!r} pushes a direction fitted on every "
            "domain (use --actions prefill)"
        )
    data = AsaInputs(c)
    lm = r.model()
    best = chosen_point(r)  # the runner reads stage results as a stage context does
    layer, tau = best["layer"], best["tau"]
    fixed = {s: load_tensors(r.path("extract") / f"{s}.safetensors")["states"] for s in SPLITS}
    fit, valid, _ = gate_sets(lm, c, data, fixed, layer, r.root / CACHE, progress)
    vec = load_tensors(r.path("vectors") / "vectors.safetensors")
    norm = r.result("sweep")["mean_norm"][str(layer)]
    extra = {k.split(".")[1]: v for k, v in vec.items() if k.startswith("dir.") and k.endswith(f".L{layer}")}
    domains = sorted(set(data.domains("cal")))
    if len(domains) < 3:
        raise UserError(
            f"leave-one-domain-out needs at least 3 domains (a router of 2); the data has {domains}"
        )
    test_ex = data.examples["test"]
    msgs = data.messages("test")
    stop = decision_stop(c.call_format, c.trigger_mode)
    folds, pooled = {}, {}
    for d in domains:
        tool_d = data.domain_tool[d]

        def keep(gs: object, d: str = d, tool_d: str = tool_d) -> list[bool]:
            return [
                dom != d and (src.startswith("run:") or tool_d not in off)
                for dom, src, off in zip(gs.domain, gs.source, gs.offered)
            ]

        fit_d, valid_d = fit.subset(keep(fit)), valid.subset(keep(valid))
        run_rows = np.array([s.startswith("run:") for s in fit_d.source])
        rest = [x for x in domains if x != d]
        router, probes = _fit_gate(
            fit_d.h[torch.from_numpy(run_rows), layer],
            fit_d.y[run_rows],
            [x for x, keep_row in zip(fit_d.domain, run_rows) if keep_row],
            rest,
            c,
        )
        vd = {x: vec[f"v_domain.{x}.L{layer}"] for x in rest}
        base = AsaParams(layer, rest, router, probes, vd, vec[f"v_global.L{layer}"], norm, extra)
        chosen, cands, fitted = choose_gate(c, layer, tau, fit_d, valid_d, base)
        tests = {f"{k['kind']}": k for k in _best_per_kind(cands)}
        idx = [i for i, e in enumerate(test_ex) if e.domain == d]
        y = np.array([test_ex[i].label for i in idx])
        conds = {}
        for name, cand in tests.items():
            params = AsaParams(layer, rest, router, probes, vd, base.v_global, norm, extra)
            if cand["kind"] != "domain":
                params.gate = fitted[(cand["kind"], cand["c"])]
            # the trigger decision does not depend on how the call is decoded: constrain "none"
            conds[name] = point_of(r.config, data, best, action, "none", gate=cand["kind"]).bind(
                lm, params, data.tools
            )
        gens = generate_conditions(
            lm,
            [msgs[i] for i in idx],
            conds,
            max_new_tokens=c.max_new_tokens_call if stop is None else 16,
            batch_size=c.batch_size,
            tools=data.chat_tools(),
            stop=stop,
            progress=progress,
            desc=f"LODO {d} (TEST)",
        )
        rows = {}
        for name, cand in tests.items():
            trig = np.array([is_triggered(g.text, c.call_format, c.trigger_mode) for g in gens[name]])
            rows[name] = {
                "c": cand["c"],
                "valid_f1": cand["f1"],
                "valid_fpr": cand["fpr"],
                "chosen": cand["kind"] == chosen["kind"],
                **metrics_with_ci(y, trig, n_boot=c.n_boot, seed=c.seed),
            }
            pooled.setdefault(name, ([], []))
            pooled[name][0].extend(y.tolist())
            pooled[name][1].extend(trig.tolist())
            if cand["kind"] == chosen["kind"]:
                pooled.setdefault("chosen", ([], []))
                pooled["chosen"][0].extend(y.tolist())
                pooled["chosen"][1].extend(trig.tolist())
        folds[d] = {"chosen": chosen["kind"], "n_test": len(idx), "n_fit": len(fit_d.y), "rows": rows}
    result = {
        "model": lm.name,
        "layer": layer,
        "tau": tau,
        "action": action,
        "gates": list(c.gates),
        "gate_data": list(c.gate_data),
        "folds": folds,
        "pooled": {
            k: metrics_with_ci(np.array(a), np.array(b), n_boot=c.n_boot, seed=c.seed)
            for k, (a, b) in pooled.items()
        },
    }
    write_lodo(result, out)
    return result


def _best_per_kind(cands: list[dict]) -> list[dict]:
    """Per gate kind, the candidate the selection rule would pick among that kind alone."""
    out = []
    for kind in dict.fromkeys(x["kind"] for x in cands):
        mine = [x for x in cands if x["kind"] == kind]
        out.append(max(mine, key=lambda x: (round(x["f1"], 9), -x["fpr"])))
    return out


def lodo_markdown(res: dict) -> str:
    lines = [
        f"# Leave one domain out: `{res['model']}`",
        "",
        f"Operating point: layer {res['layer']}, tau {res['tau']}, action `{res['action']}`; gates "
        f"{', '.join(res['gates'])}; gate data {', '.join(res['gate_data']) or 'the run prompts alone'}. Per held-out "
        "domain, every gate is refitted without that domain's prompts (and without contexts offering its tool), "
        "calibrated and chosen on the other domains' VALID rows; the held-out domain's TEST prompts are generated "
        "(95% bootstrap intervals).",
        "",
        "| held-out domain | gate | chosen on VALID | VALID F1 | VALID FPR | TEST F1 | TEST FPR | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d, f in res["folds"].items():
        for name, row in f["rows"].items():
            lines.append(
                f"| {d} | {name} | {'yes' if row['chosen'] else ''} | {row['valid_f1']:.3f} | {row['valid_fpr']:.3f} | "
                f"{ci_text(row['f1'])} | {ci_text(row['fpr'])} | {ci_text(row['precision'])} | {ci_text(row['recall'])} |"
            )
    lines += [
        "",
        "Pooled over the held-out domains:",
        "",
        "| gate | F1 | FPR | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for name, m in res["pooled"].items():
        lines.append(
            f"| {name} | {ci_text(m['f1'])} | {ci_text(m['fpr'])} | {ci_text(m['precision'])} | {ci_text(m['recall'])} |"
        )
    return "\n".join(lines)


def write_lodo(res: dict, out: Path) -> dict[str, Path]:
    """lodo.json, lodo.md and lodo.png (TEST F1 and FPR per held-out domain and gate), each written atomically."""
    from ..base.files import atomic_write
    from ..eval.plots import grouped_bars_with_ci

    paths = {"json": save_json(out / "lodo.json", res)}
    paths["md"] = atomic_write(out / "lodo.md", lodo_markdown(res) + "\n")
    doms = list(res["folds"])
    names = list(dict.fromkeys(n for f in res["folds"].values() for n in f["rows"]))
    for metric in ("f1", "fpr"):
        series = {}
        for n in names:
            if all(n in res["folds"][d]["rows"] for d in doms):
                vals = [res["folds"][d]["rows"][n][metric] for d in doms]
                series[n] = ([v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals])
        paths[metric] = grouped_bars_with_ci(
            doms,
            series,
            out / f"lodo_{metric}.png",
            title=f"Leave one domain out: TEST {metric.upper()} on the held-out domain (95% CI)",
            ylabel=metric.upper(),
        )
    return paths
