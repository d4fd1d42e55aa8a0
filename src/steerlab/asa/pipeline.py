"""The ASA pipeline as resumable stages under ``runs/<name>/<stage>/``.

extract -> sweep -> vectors -> fit -> tune (VALID, by generation) -> evaluate (TEST, by generation) -> export.
Every stage is a function here and a ``steerlab asa <stage>`` subcommand; a finished stage is skipped on rerun
unless its inputs (the config) changed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..capture import capture
from ..generation import generate_conditions
from ..probes import fit_probe, fit_router, layer_sweep, roc_auc
from ..runs import RunDir, load_json, load_tensors, save_json, save_tensors
from ..steering import steer
from ..vectors import mean_difference
from .config import AsaConfig
from .controller import AsaParams, controller_factory, ternary_gate
from .data import DOMAIN_TOOL, SPLITS, Example, load_examples
from .prompt import DEFAULT_FEW_SHOT, PromptBuilder
from .triggers import call_stop, call_success, decision_stop, is_triggered

log = logging.getLogger(__name__)
STAGES = ("extract", "sweep", "vectors", "fit", "tune", "evaluate", "export")
EVAL_ROWS = ("baseline", "asa", "no_gate", "global_only", "domain_only", "random", "negative", "oracle")


@dataclass
class AsaRun:
    """One ASA run: its config, directory, data and (lazily) the model."""

    config: AsaConfig
    root: Path
    progress: bool = True
    _lm: object = field(default=None, repr=False)
    _examples: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.run = RunDir(self.root)
        cfg_path = self.root / "config.json"
        if cfg_path.is_file():
            old = AsaConfig.from_dict(load_json(cfg_path))
            if old.to_dict() != self.config.to_dict():
                log.warning(
                    "config differs from the one in %s: stages whose inputs changed are recomputed", cfg_path
                )
        self.root.mkdir(parents=True, exist_ok=True)
        save_json(cfg_path, self.config.to_dict())

    @property
    def lm(self):  # noqa: ANN201
        if self._lm is None:
            from ..models import load_model

            self._lm = load_model(self.config.model, device=self.config.device, dtype=self.config.dtype)
        return self._lm

    @property
    def examples(self) -> dict[str, list[Example]]:
        if self._examples is None:
            self._examples = load_examples(self.config.data, self.config.limit_per_cell)
        return self._examples

    def tools(self) -> list[dict]:
        from ..data.asa_data import load_asa_tools

        return load_asa_tools()

    def builder(self) -> PromptBuilder:
        shots = self.config.few_shot
        if shots == "default":
            few = list(DEFAULT_FEW_SHOT)
        elif shots == "none":
            few = []
        else:
            few = json.loads(Path(shots).read_text())
        return PromptBuilder(
            self.tools(),
            call_format=self.config.call_format,
            few_shot=few,
            use_template_tools=self.config.use_template_tools,
        )

    def messages(self, split: str) -> list[list[dict]]:
        pb = self.builder()
        return [pb.messages(e.prompt) for e in self.examples[split]]

    def chat_tools(self) -> list[dict] | None:
        return self.tools() if self.config.use_template_tools else None

    def labels(self, split: str) -> np.ndarray:
        return np.array([e.label for e in self.examples[split]])

    def params_key(self, *stages: str) -> dict:
        """What a stage depends on: the config fields that can change its result (not the batch size, which
        cannot: batched runs equal one-at-a-time runs)."""
        c = self.config.to_dict()
        c.pop("batch_size", None)
        if "evaluate" not in stages:
            c.pop("n_boot", None)
        return {"config": c, "stages": list(stages)}

    def states(self, split: str) -> torch.Tensor:
        return load_tensors(self.run.path("extract") / f"{split}.safetensors")["states"]

    def layer_params(self, layer: int) -> AsaParams:
        t = load_tensors(self.run.path("fit") / f"params_L{layer}.safetensors")
        meta = load_json(self.run.path("fit") / "meta.json")
        norm = load_json(self.run.path("sweep") / "sweep.json")["mean_norm"][str(layer)]
        return AsaParams.from_tensors(t, layer, meta["domains"], norm)


def stage_extract(r: AsaRun) -> Path:
    """Last-prompt-token states at every layer for every split."""
    key = r.params_key("extract")
    if r.run.is_done("extract", key):
        return r.run.path("extract")
    lm = r.lm
    with r.run.writing("extract", key) as tmp:
        meta = {
            "model": lm.name,
            "fingerprint": lm.fingerprint,
            "site": r.config.site,
            "layer_convention": "layer k = output of decoder block k (0-based) = HF hidden_states[k+1]",
            "prompt": r.builder().describe(),
            "splits": {},
        }
        for split in SPLITS:
            acts = capture(
                lm,
                r.messages(split),
                layers=list(range(lm.n_layers)),
                sites=r.config.site,
                positions="last",
                batch_size=r.config.batch_size,
                tools=r.chat_tools(),
                progress=r.progress,
            )
            states = torch.stack([acts[(k, r.config.site)] for k in range(lm.n_layers)], dim=1)
            save_tensors(tmp / f"{split}.safetensors", {"states": states})
            meta["splits"][split] = [e.__dict__ for e in r.examples[split]]
        save_json(tmp / "meta.json", meta)
    return r.run.path("extract")


def stage_sweep(r: AsaRun) -> dict:
    """Probe AUC per layer (fit TRAIN, score VALID) and the mean hidden norm per layer (CAL)."""
    key = r.params_key("extract", "sweep")
    if r.run.is_done("sweep", key):
        return load_json(r.run.path("sweep") / "sweep.json")
    train, valid, cal = r.states("train"), r.states("valid"), r.states("cal")
    n_layers = train.shape[1]
    aucs = layer_sweep(
        train, r.labels("train"), valid, r.labels("valid"), c=r.config.probe_c, progress=r.progress
    )
    norms = {str(k): float(cal[:, k].norm(dim=-1).mean()) for k in range(n_layers)}
    ranked = sorted(aucs, key=lambda k: (-aucs[k], k))
    top = ranked[: r.config.n_top_layers]
    candidates = sorted(set(top) | set(r.config.candidate_extra_layers(n_layers)))
    result = {
        "auc_valid": {str(k): v for k, v in aucs.items()},
        "mean_norm": norms,
        "best_auc_layer": ranked[0],
        "top_layers": top,
        "candidate_layers": candidates,
    }
    with r.run.writing("sweep", key) as tmp:
        save_json(tmp / "sweep.json", result)
        from ..eval.plots import line_sweep

        line_sweep(
            list(range(n_layers)),
            {"probe AUC (VALID)": [aucs[k] for k in range(n_layers)]},
            tmp / "probe_auc.png",
            title="Tool vs non-tool probe AUC by layer",
            xlabel="layer",
            ylabel="ROC AUC",
            mark_x=ranked[0],
        )
    return result


def stage_vectors(r: AsaRun) -> Path:
    """mean(tool) - mean(non-tool) on CAL, unit norm: one global vector and one per domain, per candidate layer."""
    key = r.params_key("extract", "sweep", "vectors")
    if r.run.is_done("vectors", key):
        return r.run.path("vectors")
    sweep = stage_sweep(r)
    cal, ex = r.states("cal"), r.examples["cal"]
    lab = torch.tensor([e.label for e in ex])
    domains = sorted({e.domain for e in ex})
    tensors = {}
    for layer in sweep["candidate_layers"]:
        h = cal[:, layer]
        tensors[f"v_global.L{layer}"] = mean_difference(h[lab == 1], h[lab == 0])
        for d in domains:
            m = torch.tensor([e.domain == d for e in ex])
            tensors[f"v_domain.{d}.L{layer}"] = mean_difference(h[m & (lab == 1)], h[m & (lab == 0)])
    with r.run.writing("vectors", key) as tmp:
        save_tensors(tmp / "vectors.safetensors", tensors)
        save_json(tmp / "meta.json", {"domains": domains, "layers": sweep["candidate_layers"]})
    return r.run.path("vectors")


def stage_fit(r: AsaRun) -> Path:
    """Router (multiclass, standardised) and one probe per domain on TRAIN, per candidate layer."""
    key = r.params_key("extract", "sweep", "vectors", "fit")
    if r.run.is_done("fit", key):
        return r.run.path("fit")
    stage_vectors(r)
    vec = load_tensors(r.run.path("vectors") / "vectors.safetensors")
    vmeta = load_json(r.run.path("vectors") / "meta.json")
    domains = vmeta["domains"]
    train, ex = r.states("train"), r.examples["train"]
    lab = np.array([e.label for e in ex])
    doms = [e.domain for e in ex]
    with r.run.writing("fit", key) as tmp:
        for layer in vmeta["layers"]:
            h = train[:, layer]
            router = fit_router(h, doms, classes=domains, c=r.config.probe_c, seed=r.config.seed)
            probes = {}
            for d in domains:
                m = np.array([x == d for x in doms])
                probes[d] = fit_probe(h[torch.from_numpy(m)], lab[m], c=r.config.probe_c, seed=r.config.seed)
            params = AsaParams(
                layer,
                domains,
                router,
                probes,
                {d: vec[f"v_domain.{d}.L{layer}"] for d in domains},
                vec[f"v_global.L{layer}"],
                0.0,
            )
            save_tensors(tmp / f"params_L{layer}.safetensors", params.tensors())
        save_json(tmp / "meta.json", {"domains": domains, "layers": vmeta["layers"]})
    return r.run.path("fit")


def _f1_fpr(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from ..eval.metrics import trigger_metrics

    m = trigger_metrics(y, pred)
    return m["f1"], m["fpr"]


def _steer_rows(r: AsaRun, vectors: torch.Tensor, layer: int, coef: float):  # noqa: ANN202
    def setup(idx: list[int]):  # noqa: ANN202
        return steer(r.lm, vectors[idx], layer=layer, site=r.config.site, coef=coef, policy="prompt_last")

    return setup


def stage_tune(r: AsaRun) -> dict:
    """Choose (L, alpha, beta, tau) by the F1 of *generated* outputs on VALID.

    The gate is a function of the unsteered state, so each prompt's output under gate +1 and -1 is generated once
    per (L, alpha, beta); any tau then picks per prompt among baseline / + / - exactly as the online controller
    would (checked on TEST in ``evaluate``). Selection: best F1 among settings whose FPR is at most the
    baseline's + 0.02, else best F1.
    """
    key = r.params_key("extract", "sweep", "vectors", "fit", "tune")
    if r.run.is_done("tune", key):
        return load_json(r.run.path("tune") / "best.json")
    stage_fit(r)
    c = r.config
    layers = load_json(r.run.path("fit") / "meta.json")["layers"]
    valid = r.states("valid")
    y = r.labels("valid")
    conds: dict = {"baseline": None}
    p_tool: dict[int, torch.Tensor] = {}
    for layer in layers:
        params = r.layer_params(layer)
        h = valid[:, layer]
        dom = params.route(h)
        p_tool[layer] = params.p_tool(h, dom)
        for beta in c.betas:
            dirs = params.directions(dom, beta)
            for alpha in c.alphas:
                for sign, name in ((1, "plus"), (-1, "minus")):
                    conds[(layer, alpha, beta, name)] = _steer_rows(
                        r, dirs, layer, sign * alpha * params.mean_norm
                    )
    t0 = time.time()
    gens = generate_conditions(
        r.lm,
        r.messages("valid"),
        {str(k): v for k, v in conds.items()},
        max_new_tokens=c.max_new_tokens_decision,
        batch_size=c.batch_size,
        tools=r.chat_tools(),
        stop=decision_stop(c.call_format, c.trigger_mode),
        progress=r.progress,
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
            for alpha in c.alphas:
                plus, minus = trig[(layer, alpha, beta, "plus")], trig[(layer, alpha, beta, "minus")]
                for tau in c.taus:
                    gate = ternary_gate(p_tool[layer], tau).numpy()
                    pred = np.where(gate > 0, plus, np.where(gate < 0, minus, trig["baseline"]))
                    f1, fpr = _f1_fpr(y, pred)
                    grid.append(
                        {
                            "layer": layer,
                            "alpha": alpha,
                            "beta": beta,
                            "tau": tau,
                            "f1": f1,
                            "fpr": fpr,
                            "plus_rate": float(plus.mean()),
                            "minus_rate": float(minus.mean()),
                        }
                    )
    ok = [g for g in grid if g["fpr"] <= base_fpr + 0.02] or grid
    best = max(ok, key=lambda g: (round(g["f1"], 9), -g["fpr"], -g["alpha"], -g["tau"]))
    result = {
        "best": best,
        "baseline_valid": {"f1": base_f1, "fpr": base_fpr},
        "layers": layers,
        "seconds": time.time() - t0,
        "n_valid": int(len(y)),
        "selection": "max VALID F1 subject to FPR <= baseline FPR + 0.02 (else max F1)",
    }
    with r.run.writing("tune", key) as tmp:
        save_json(tmp / "grid.json", grid)
        save_json(tmp / "best.json", result)
        _plot_tune(grid, best, base_f1, tmp)
    return result


def _plot_tune(grid: list[dict], best: dict, base_f1: float, out: Path) -> None:
    from ..eval.plots import heatmap, line_sweep

    rows = [g for g in grid if g["layer"] == best["layer"] and g["beta"] == best["beta"]]
    alphas = sorted({g["alpha"] for g in rows})
    taus = sorted({g["tau"] for g in rows})
    mat = [[next(g["f1"] for g in rows if g["alpha"] == a and g["tau"] == t) for t in taus] for a in alphas]
    heatmap(
        mat,
        [f"α={a}" for a in alphas],
        [f"τ={t}" for t in taus],
        out / "alpha_tau_f1.png",
        title=f"VALID trigger F1 at layer {best['layer']}, β={best['beta']} (baseline {base_f1:.2f})",
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


def stage_evaluate(r: AsaRun) -> dict:
    """TEST: baseline, ASA and every ablation by real generation; probe-only as a reference; intervals."""
    key = r.params_key("extract", "sweep", "vectors", "fit", "tune", "evaluate")
    if r.run.is_done("evaluate", key):
        return load_json(r.run.path("evaluate") / "metrics.json")
    best = stage_tune(r)["best"]
    c = r.config
    layer, alpha, beta, tau = best["layer"], best["alpha"], best["beta"], best["tau"]
    params = r.layer_params(layer)
    ex = r.examples["test"]
    y = r.labels("test")
    conds: dict = {"baseline": None}
    handles: dict[str, list] = {}
    for mode_row in EVAL_ROWS[1:]:
        mode = "full" if mode_row == "asa" else mode_row
        make = controller_factory(params, alpha, tau, beta, mode, labels=list(y), seed=c.seed)

        def setup(idx: list[int], make=make, name=mode_row):  # noqa: ANN202
            ctrl = make(idx)
            handles.setdefault(name, []).append((idx, ctrl))
            return steer(r.lm, None, layer=layer, site=c.site, policy="prompt_last", controller=ctrl)

        conds[mode_row] = setup
    gens = generate_conditions(
        r.lm,
        r.messages("test"),
        conds,
        max_new_tokens=c.max_new_tokens_call,
        batch_size=c.batch_size,
        tools=r.chat_tools(),
        stop=call_stop(c.call_format, c.trigger_mode),
        progress=r.progress,
        desc="evaluate (TEST)",
    )
    tools = r.tools()
    preds, rows, predictions = {}, {}, []
    for name in EVAL_ROWS:
        trig = np.array([is_triggered(g.text, c.call_format, c.trigger_mode) for g in gens[name]])
        success = [
            call_success(g.text, c.call_format, tools, DOMAIN_TOOL.get(e.domain)) if t else (False, "")
            for g, e, t in zip(gens[name], ex, trig)
        ]
        good = np.array([ok and e.label == 1 for (ok, _), e in zip(success, ex)])
        preds[name] = trig
        rows[name] = _metrics_block(y, trig, c.n_boot, c.seed)
        rows[name]["success_precision"] = float(good[trig].mean()) if trig.any() else 0.0
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
    test_states = r.states("test")[:, layer]
    dom = params.route(test_states)
    p = params.p_tool(test_states, dom)
    probe_pred = (p > 0.5).numpy()
    rows["probe_only"] = _metrics_block(y, probe_pred, c.n_boot, c.seed)
    rows["probe_only"]["auc"] = roc_auc(p, y)
    # the online controller must have made exactly the decisions computed offline from the stored states
    online = torch.zeros(len(y))
    for idx, ctrl in handles["asa"]:
        online[idx] = torch.cat([d.gate for d in ctrl.decisions]).cpu()
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
    with r.run.writing("evaluate", key) as tmp:
        save_json(tmp / "metrics.json", result)
        with open(tmp / "predictions.jsonl", "w") as f:
            for row in predictions:
                f.write(json.dumps(row) + "\n")
        _plot_eval(result, tmp)
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


def stage_export(r: AsaRun, out: Path | None = None) -> dict:
    """The fitted controller at the chosen operating point: safetensors + JSON manifest."""
    from ..assets import asset_size_bytes, save_asset

    best = stage_tune(r)["best"]
    lm = r.lm
    params = r.layer_params(best["layer"])
    manifest = {
        "kind": "asa",
        "model": lm.name,
        "model_fingerprint": lm.fingerprint,
        "hidden_size": lm.hidden_size,
        "n_layers": lm.n_layers,
        "layer": best["layer"],
        "site": r.config.site,
        "layer_convention": "layer k = output of decoder block k (0-based) = HF hidden_states[k+1]",
        "position_policy": "prompt_last",
        "alpha": best["alpha"],
        "alpha_unit": "mean L2 norm of the hidden state at this layer and site on CAL",
        "mean_norm": params.mean_norm,
        "tau": best["tau"],
        "beta": best["beta"],
        "domains": params.domains,
        "domain_tools": {d: DOMAIN_TOOL.get(d) for d in params.domains},
        "tool_call_format": r.config.call_format,
        "trigger_mode": r.config.trigger_mode,
        "prompt": r.builder().describe(),
        "tuned_on": "VALID F1 of generated outputs",
        "config": r.config.to_dict(),
    }
    dest = Path(out) if out else r.root / "asset"
    save_asset(dest, params.tensors(), manifest)
    info = {"path": str(dest), "bytes": asset_size_bytes(dest)}
    save_json(r.root / "export.json", info)
    return info


def run_all(r: AsaRun) -> dict:
    t0 = time.time()
    stage_extract(r)
    sweep = stage_sweep(r)
    stage_vectors(r)
    stage_fit(r)
    tune = stage_tune(r)
    ev = stage_evaluate(r)
    exp = stage_export(r)
    from .report import write_report

    path = write_report(r, sweep, tune, ev, exp, seconds=time.time() - t0)
    return {"report": str(path), "evaluate": ev, "export": exp}
