"""The ASA pipeline as resumable stages (``steerlab.stages.Runner``) under the run directory.

extract -> sweep -> vectors -> fit -> tune (VALID, by generation) -> evaluate (TEST, by generation) -> asset ->
report. Each stage declares the config fields it reads: changing ``taus`` reruns tune and what follows, never the
extraction.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..capture import capture
from ..generation import generate_conditions
from ..probes import fit_probe, fit_router, layer_sweep, roc_auc
from ..runs import load_json, load_tensors, save_json, save_tensors
from ..stages import Runner, Stage, StageContext
from ..steering import steer
from ..tools import call_stop, call_success, decision_stop, is_triggered
from ..vectors import get_estimator
from .apply import GatedSteering
from .config import AsaConfig
from .controller import AsaParams
from .data import SPLITS, check_domains_have_tools, load_examples, load_tools
from .gate import ternary_gate
from .prompt import DEFAULT_FEW_SHOT, PromptBuilder

log = logging.getLogger(__name__)
EVAL_ROWS = ("baseline", "asa", "no_gate", "global_only", "domain_only", "random", "negative", "oracle")
LAYER_CONVENTION = "layer k = output of decoder block k (0-based) = HF hidden_states[k+1]"
SELECTION = "max VALID F1 subject to FPR <= baseline FPR + 0.02 (else max F1)"
DATA = ("data", "limit_per_cell", "tools")
PROMPT = ("call_format", "few_shot", "use_template_tools")


# ---------------------------------------------------------------- inputs shared by the stages


class AsaInputs:
    """The examples, tools and prompts a config names (read once per run, checked before any model loads)."""

    def __init__(self, cfg: AsaConfig | object) -> None:
        self.examples = load_examples(cfg.data, cfg.limit_per_cell)
        self.tools, self.domain_tool = load_tools(cfg.tools)
        check_domains_have_tools(self.examples, self.domain_tool, cfg.tools)
        self.cfg = cfg

    def builder(self) -> PromptBuilder:
        shots = self.cfg.few_shot
        if shots == "default":
            few = list(DEFAULT_FEW_SHOT)
        elif shots == "none":
            few = []
        else:
            few = json.loads(Path(shots).read_text())
        return PromptBuilder(
            self.tools,
            call_format=self.cfg.call_format,
            few_shot=few,
            use_template_tools=self.cfg.use_template_tools,
        )

    def messages(self, split: str) -> list[list[dict]]:
        pb = self.builder()
        return [pb.messages(e.prompt) for e in self.examples[split]]

    def chat_tools(self) -> list[dict] | None:
        return self.tools if self.cfg.use_template_tools else None

    def labels(self, split: str) -> np.ndarray:
        return np.array([e.label for e in self.examples[split]])


def _inputs(ctx: StageContext) -> AsaInputs:
    return AsaInputs(ctx.config)


def preflight(cfg: AsaConfig) -> None:
    """Everything that can be checked without the model: data, tools, few-shot file, the prompt format."""
    inputs = AsaInputs(cfg)
    inputs.builder()


def _states(ctx: StageContext, split: str) -> torch.Tensor:
    return load_tensors(ctx.path("extract") / f"{split}.safetensors")["states"]


def _layer_params(ctx: StageContext, layer: int) -> AsaParams:
    t = load_tensors(ctx.path("fit") / f"params_L{layer}.safetensors")
    meta = load_json(ctx.path("fit") / "meta.json")
    norm = ctx.result("sweep")["mean_norm"][str(layer)]
    return AsaParams.from_tensors(t, layer, meta["domains"], norm)


# ---------------------------------------------------------------- stages


def stage_extract(ctx: StageContext) -> dict:
    """Last-prompt-token states at every layer for every split."""
    c, lm, inputs = ctx.config, ctx.lm, _inputs(ctx)
    meta = {
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "site": c.site,
        "layer_convention": LAYER_CONVENTION,
        "prompt": inputs.builder().describe(),
        "splits": {},
    }
    for split in SPLITS:
        acts = capture(
            lm,
            inputs.messages(split),
            layers=list(range(lm.n_layers)),
            sites=c.site,
            positions="last",
            batch_size=c.batch_size,
            tools=inputs.chat_tools(),
            progress=ctx.progress,
        )
        states = torch.stack([acts[(k, c.site)] for k in range(lm.n_layers)], dim=1)
        save_tensors(ctx.out / f"{split}.safetensors", {"states": states})
        meta["splits"][split] = [e.__dict__ for e in inputs.examples[split]]
    save_json(ctx.out / "meta.json", meta)
    return {"n": {s: len(v) for s, v in inputs.examples.items()}, "n_layers": lm.n_layers}


def stage_sweep(ctx: StageContext) -> dict:
    """Probe AUC per layer (fit TRAIN, score VALID), the mean hidden norm per layer (CAL), candidate layers."""
    c, inputs = ctx.config, _inputs(ctx)
    train, valid, cal = _states(ctx, "train"), _states(ctx, "valid"), _states(ctx, "cal")
    n_layers = train.shape[1]
    aucs = layer_sweep(
        train, inputs.labels("train"), valid, inputs.labels("valid"), c=c.probe_c, progress=ctx.progress
    )
    norms = {str(k): float(cal[:, k].norm(dim=-1).mean()) for k in range(n_layers)}
    ranked = sorted(aucs, key=lambda k: (-aucs[k], k))
    top = ranked[: c.n_top_layers]
    candidates = sorted(set(top) | set(c.candidate_extra_layers(n_layers)))
    from ..eval.plots import line_sweep

    line_sweep(
        list(range(n_layers)),
        {"probe AUC (VALID)": [aucs[k] for k in range(n_layers)]},
        ctx.out / "probe_auc.png",
        title="Tool vs non-tool probe AUC by layer",
        xlabel="layer",
        ylabel="ROC AUC",
        mark_x=ranked[0],
    )
    return {
        "auc_valid": {str(k): v for k, v in aucs.items()},
        "mean_norm": norms,
        "best_auc_layer": ranked[0],
        "top_layers": top,
        "candidate_layers": candidates,
    }


def stage_vectors(ctx: StageContext) -> dict:
    """Per candidate layer, on CAL: one global direction (tool vs non-tool) and one per domain."""
    c, inputs = ctx.config, _inputs(ctx)
    layers = ctx.result("sweep")["candidate_layers"]
    cal, ex = _states(ctx, "cal"), inputs.examples["cal"]
    lab = torch.tensor([e.label for e in ex])
    domains = sorted({e.domain for e in ex})
    estimate = get_estimator(c.estimator)
    tensors = {}
    for layer in layers:
        h = cal[:, layer]
        tensors[f"v_global.L{layer}"] = estimate(h[lab == 1], h[lab == 0], seed=c.seed)
        for d in domains:
            m = torch.tensor([e.domain == d for e in ex])
            tensors[f"v_domain.{d}.L{layer}"] = estimate(h[m & (lab == 1)], h[m & (lab == 0)], seed=c.seed)
    save_tensors(ctx.out / "vectors.safetensors", tensors)
    return {"domains": domains, "layers": layers, "estimator": c.estimator}


def stage_fit(ctx: StageContext) -> dict:
    """Router (multiclass, standardised) and one probe per domain on TRAIN, per candidate layer."""
    c, inputs = ctx.config, _inputs(ctx)
    vec = load_tensors(ctx.path("vectors") / "vectors.safetensors")
    vmeta = ctx.result("vectors")
    domains = vmeta["domains"]
    train, ex = _states(ctx, "train"), inputs.examples["train"]
    lab = np.array([e.label for e in ex])
    doms = [e.domain for e in ex]
    for layer in vmeta["layers"]:
        h = train[:, layer]
        router = fit_router(h, doms, classes=domains, c=c.probe_c, seed=c.seed)
        probes = {}
        for d in domains:
            m = np.array([x == d for x in doms])
            probes[d] = fit_probe(h[torch.from_numpy(m)], lab[m], c=c.probe_c, seed=c.seed)
        params = AsaParams(
            layer,
            domains,
            router,
            probes,
            {d: vec[f"v_domain.{d}.L{layer}"] for d in domains},
            vec[f"v_global.L{layer}"],
            0.0,
        )
        save_tensors(ctx.out / f"params_L{layer}.safetensors", params.tensors())
    meta = {"domains": domains, "layers": vmeta["layers"]}
    save_json(ctx.out / "meta.json", meta)
    return meta


def _f1_fpr(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from ..eval.metrics import trigger_metrics

    m = trigger_metrics(y, pred)
    return m["f1"], m["fpr"]


def stage_tune(ctx: StageContext) -> dict:
    """Choose (L, strength, beta, tau) by the F1 of *generated* outputs on VALID.

    The gate is a function of the unsteered state, so each prompt's output under gate +1 and -1 is generated once
    per (L, strength, beta); any tau then picks per prompt among baseline / + / - exactly as the online controller
    would (checked on TEST in ``evaluate``).
    """
    c, lm, inputs = ctx.config, ctx.lm, _inputs(ctx)
    layers = ctx.result("fit")["layers"]
    valid = _states(ctx, "valid")
    y = inputs.labels("valid")
    conds: dict = {"baseline": None}
    p_tool: dict[int, torch.Tensor] = {}

    def push(dirs: torch.Tensor, layer: int, coef: float):  # noqa: ANN202
        return lambda idx: steer(lm, dirs[idx], layer=layer, site=c.site, coef=coef, policy="prompt_last")

    for layer in layers:
        params = _layer_params(ctx, layer)
        h = valid[:, layer]
        dom = params.route(h)
        p_tool[layer] = params.p_tool(h, dom)
        for beta in c.betas:
            dirs = params.directions(dom, beta)
            for strength in c.strengths:
                for sign, name in ((1, "plus"), (-1, "minus")):
                    conds[(layer, strength, beta, name)] = push(
                        dirs, layer, sign * strength * params.mean_norm
                    )
    gens = generate_conditions(
        lm,
        inputs.messages("valid"),
        {str(k): v for k, v in conds.items()},
        max_new_tokens=c.max_new_tokens_decision,
        batch_size=c.batch_size,
        tools=inputs.chat_tools(),
        stop=decision_stop(c.call_format, c.trigger_mode),
        progress=ctx.progress,
        desc="tune (VALID)",
    )
    trig = {
        k: np.array([is_triggered(g.text, c.call_format, c.trigger_mode) for g in gens[str(k)]])
        for k in conds
    }
    base_f1, base_fpr = _f1_fpr(y, trig["baseline"])
    grid = []
    for layer in layers:
        for beta in c.betas:
            for strength in c.strengths:
                plus, minus = trig[(layer, strength, beta, "plus")], trig[(layer, strength, beta, "minus")]
                for tau in c.taus:
                    gate = ternary_gate(p_tool[layer], tau).numpy()
                    pred = np.where(gate > 0, plus, np.where(gate < 0, minus, trig["baseline"]))
                    f1, fpr = _f1_fpr(y, pred)
                    grid.append(
                        {
                            "layer": layer,
                            "strength": strength,
                            "beta": beta,
                            "tau": tau,
                            "f1": f1,
                            "fpr": fpr,
                            "plus_rate": float(plus.mean()),
                            "minus_rate": float(minus.mean()),
                        }
                    )
    ok = [g for g in grid if g["fpr"] <= base_fpr + 0.02] or grid
    best = max(ok, key=lambda g: (round(g["f1"], 9), -g["fpr"], -g["strength"], -g["tau"]))
    save_json(ctx.out / "grid.json", grid)
    _plot_tune(grid, best, base_f1, ctx.out)
    return {
        "best": best,
        "baseline_valid": {"f1": base_f1, "fpr": base_fpr},
        "layers": layers,
        "n_valid": int(len(y)),
        "selection": SELECTION,
    }


def _plot_tune(grid: list[dict], best: dict, base_f1: float, out: Path) -> None:
    from ..eval.plots import heatmap, line_sweep

    rows = [g for g in grid if g["layer"] == best["layer"] and g["beta"] == best["beta"]]
    strengths = sorted({g["strength"] for g in rows})
    taus = sorted({g["tau"] for g in rows})
    mat = [
        [next(g["f1"] for g in rows if g["strength"] == a and g["tau"] == t) for t in taus] for a in strengths
    ]
    heatmap(
        mat,
        [f"{a:g}" for a in strengths],
        [f"{t:g}" for t in taus],
        out / "strength_tau_f1.png",
        title=f"VALID trigger F1 at layer {best['layer']}, β={best['beta']} (baseline {base_f1:.2f})",
        xlabel="gate threshold τ",
        ylabel="strength (× mean hidden norm)",
        colorbar_label="trigger F1",
    )
    layers = sorted({g["layer"] for g in grid})
    per_layer = [max(g["f1"] for g in grid if g["layer"] == k) for k in layers]
    line_sweep(
        layers,
        {"best VALID F1": per_layer, "baseline": [base_f1] * len(layers)},
        out / "layer_f1.png",
        title="Best VALID F1 per candidate layer",
        xlabel="layer",
        ylabel="F1",
        mark_x=best["layer"],
    )


def _metrics_block(y: np.ndarray, pred: np.ndarray, n_boot: int, seed: int) -> dict:
    from ..eval.stats import metrics_with_ci

    return metrics_with_ci(y, pred, n_boot=n_boot, seed=seed)


def stage_evaluate(ctx: StageContext) -> dict:
    """TEST: baseline, ASA and every ablation by real generation; probe-only as a reference; intervals."""
    c, lm, inputs = ctx.config, ctx.lm, _inputs(ctx)
    best = ctx.result("tune")["best"]
    layer, strength, beta, tau = best["layer"], best["strength"], best["beta"], best["tau"]
    params = _layer_params(ctx, layer)
    ex = inputs.examples["test"]
    y = inputs.labels("test")
    conds: dict = {"baseline": None}
    rows_steering: dict[str, GatedSteering] = {}
    for row in EVAL_ROWS[1:]:
        rows_steering[row] = GatedSteering(
            lm,
            params,
            strength=strength,
            tau=tau,
            beta=beta,
            site=c.site,
            mode="full" if row == "asa" else row,
            labels=list(y),
            seed=c.seed,
        )
        conds[row] = rows_steering[row]
    gens = generate_conditions(
        lm,
        inputs.messages("test"),
        conds,
        max_new_tokens=c.max_new_tokens_call,
        batch_size=c.batch_size,
        tools=inputs.chat_tools(),
        stop=call_stop(c.call_format, c.trigger_mode),
        progress=ctx.progress,
        desc="evaluate (TEST)",
    )
    preds, rows, predictions = {}, {}, []
    for name in EVAL_ROWS:
        trig = np.array([is_triggered(g.text, c.call_format, c.trigger_mode) for g in gens[name]])
        success = [
            call_success(g.text, c.call_format, inputs.tools, inputs.domain_tool.get(e.domain))
            if t
            else (False, "")
            for g, e, t in zip(gens[name], ex, trig)
        ]
        good = np.array([ok and e.label == 1 for (ok, _), e in zip(success, ex)])
        preds[name] = trig
        rows[name] = _metrics_block(y, trig, c.n_boot, c.seed)
        rows[name]["success_precision"] = float(good[trig].mean()) if trig.any() else None
        rows[name]["n_triggered"] = int(trig.sum())
        for i, (g, e) in enumerate(zip(gens[name], ex)):
            predictions.append(
                {
                    "condition": name,
                    "id": e.id,
                    "domain": e.domain,
                    "label": e.label,
                    "triggered": bool(trig[i]),
                    "call_ok": success[i][0],
                    "why": success[i][1],
                    "output": g.text,
                }
            )
    test_states = _states(ctx, "test")[:, layer]
    dom = params.route(test_states)
    p = params.p_tool(test_states, dom)
    probe_pred = (p > 0.5).numpy()
    rows["probe_only"] = _metrics_block(y, probe_pred, c.n_boot, c.seed)
    rows["probe_only"]["auc"] = roc_auc(p, y)
    # the online controller must have made exactly the decisions computed offline from the stored states
    online = rows_steering["asa"].decisions(len(y))["gate"]
    offline_gate = ternary_gate(p, tau)
    agreement = float((online == offline_gate).float().mean())
    from ..eval.stats import paired_bootstrap_diff

    diffs = {}
    for metric in ("f1", "fpr", "precision", "recall"):
        d, lo, hi, pval = paired_bootstrap_diff(
            metric, y, preds["baseline"], preds["asa"], n_boot=c.n_boot, seed=c.seed
        )
        diffs[metric] = {"diff": d, "lo": lo, "hi": hi, "p_value": pval}
    per_domain = {}
    for d in sorted({e.domain for e in ex}):
        m = np.array([e.domain == d for e in ex])
        per_domain[d] = {
            name: _metrics_block(y[m], preds[name][m], c.n_boot, c.seed)
            for name in ("baseline", "asa", "oracle")
        }
    router_acc = float((dom.numpy() == np.array([params.domains.index(e.domain) for e in ex])).mean())
    gate_counts = {str(int(g)): int((offline_gate == g).sum()) for g in (-1, 0, 1)}
    result = {
        "operating_point": best,
        "rows": rows,
        "asa_minus_baseline": diffs,
        "per_domain": per_domain,
        "gate_agreement_online_vs_offline": agreement,
        "router_accuracy_test": router_acc,
        "gate_counts_test": gate_counts,
        "n_test": int(len(y)),
    }
    save_json(ctx.out / "metrics.json", result)
    with open(ctx.out / "predictions.jsonl", "w") as f:
        for row in predictions:
            f.write(json.dumps(row) + "\n")
    _plot_eval(result, ctx.out)
    return result


def _plot_eval(result: dict, out: Path) -> None:
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
    for name in ("baseline", "asa"):
        vals = [result["per_domain"][d][name]["f1"] for d in doms]
        groups[name] = ([v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals])
    grouped_bars_with_ci(
        doms, groups, out / "f1_by_domain.png", title="TEST trigger F1 by domain", ylabel="F1"
    )


def stage_asset(ctx: StageContext) -> dict:
    """The fitted controller at the chosen operating point: safetensors + JSON manifest, in this stage's folder."""
    from ..assets import asset_size_bytes, write_asset_files

    c, lm, inputs = ctx.config, ctx.lm, _inputs(ctx)
    best = ctx.result("tune")["best"]
    params = _layer_params(ctx, best["layer"])
    manifest = {
        "kind": "asa",
        "model": lm.name,
        "model_fingerprint": lm.fingerprint,
        "model_dtype": str(lm.dtype).replace("torch.", ""),
        "hidden_size": lm.hidden_size,
        "n_layers": lm.n_layers,
        "layer": best["layer"],
        "site": c.site,
        "layer_convention": LAYER_CONVENTION,
        "position_policy": "prompt_last",
        "strength": best["strength"],
        "strength_unit": "mean L2 norm of the hidden state at this layer and site on CAL",
        "mean_norm": params.mean_norm,
        "tau": best["tau"],
        "beta": best["beta"],
        "domains": params.domains,
        "domain_tools": {d: inputs.domain_tool.get(d) for d in params.domains},
        "tools": inputs.tools,
        "tool_call_format": c.call_format,
        "trigger_mode": c.trigger_mode,
        "prompt": inputs.builder().describe(),
        "tuned_on": "VALID F1 of generated outputs",
    }
    write_asset_files(ctx.out, params.tensors(), manifest)
    return {"path": str(ctx.runner.path("asset")), "bytes": asset_size_bytes(ctx.out)}


def stage_report(ctx: StageContext) -> dict:
    from .report import write_report

    path = write_report(ctx)
    return {"report": str(path)}


STAGES = (
    Stage(
        "extract",
        stage_extract,
        reads=(*DATA, *PROMPT, "site"),
        uses_model=True,
        knobs=("batch_size",),
        doc="last-prompt-token states at every layer",
    ),
    Stage(
        "sweep",
        stage_sweep,
        reads=(*DATA, "probe_c", "n_top_layers", "extra_layers"),
        after=("extract",),
        doc="probe AUC per layer, mean hidden norms, candidate layers",
    ),
    Stage(
        "vectors",
        stage_vectors,
        reads=(*DATA, "estimator", "seed"),
        after=("extract", "sweep"),
        doc="tool - non-tool directions on CAL (global and per domain)",
    ),
    Stage(
        "fit",
        stage_fit,
        reads=(*DATA, "probe_c", "seed"),
        after=("extract", "vectors"),
        doc="router + per-domain probes on TRAIN",
    ),
    Stage(
        "tune",
        stage_tune,
        reads=(
            *DATA,
            *PROMPT,
            "site",
            "strengths",
            "taus",
            "betas",
            "trigger_mode",
            "max_new_tokens_decision",
        ),
        after=("fit", "sweep", "extract"),
        uses_model=True,
        knobs=("batch_size",),
        doc="layer, strength, tau, beta by generated F1 on VALID",
    ),
    Stage(
        "evaluate",
        stage_evaluate,
        reads=(*DATA, *PROMPT, "site", "trigger_mode", "max_new_tokens_call", "n_boot", "seed"),
        after=("tune", "fit", "sweep", "extract"),
        uses_model=True,
        knobs=("batch_size",),
        doc="TEST: baseline, ASA, ablations, intervals",
    ),
    Stage(
        "asset",
        stage_asset,
        reads=(*DATA, *PROMPT, "site", "trigger_mode"),
        after=("tune", "fit", "sweep"),
        uses_model=True,
        doc="the asset: safetensors + JSON manifest",
    ),
    Stage(
        "report",
        stage_report,
        reads=("data", "limit_per_cell"),
        after=("sweep", "tune", "evaluate", "asset"),
        doc="report.md with the tables and plots",
    ),
)


def runner(
    cfg: AsaConfig, root: str | Path | None = None, progress: bool = True, models: object = None
) -> Runner:
    r = Runner(STAGES, cfg, root or cfg.run_dir(), progress=progress, models=models)
    return r


def run_all(r: Runner) -> dict:
    """Every stage, then ``report.md`` copied to the run directory's top."""
    import shutil

    r.run_all()
    src = r.path("report") / "report.md"
    shutil.copyfile(src, r.root / "report.md.tmp")
    (r.root / "report.md.tmp").replace(r.root / "report.md")
    return {"report": str(r.root / "report.md"), "evaluate": r.result("evaluate"), "asset": r.result("asset")}
