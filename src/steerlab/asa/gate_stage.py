"""The ``gate`` stage: choose what gives p(tool) at the tuned layer, on VALID, among ASA's per-domain probes and probe
gates that read "this request needs one of the offered tools" (``asa.gates``).

Fit data: the run's CAL and TRAIN prompts with the run's tools (as every stage sees them), plus, per ``gate_data``,
the same kind of request with the tool list in the context (``asa.contexts``): ``varied`` (the run's prompts with
varied subsets of its tools; a tool prompt whose tool is not offered is a negative) and ``bfcl`` (BFCL fit-only
categories: each item with its own functions, and with unrelated functions). Selection data (VALID): the run's VALID
prompts, the varied contexts of VALID prompts and a held-out share of the BFCL items (by item).

Each probe gate's threshold is calibrated to ``gate_fpr`` on out-of-fold scores of the fit data (3 folds by
request), so VALID checks the calibration instead of defining it; the gate kind and its regularisation are chosen by
VALID F1 among candidates whose VALID false-call rate is at most ``max_fpr`` (else the lowest false-call rate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..capture import capture
from ..eval.metrics import trigger_metrics
from ..models import render_prompts
from ..runs import load_tensors, save_tensors
from ..stages import StageContext
from ..tools import tool_spec
from .contexts import ContextExample, bfcl_contexts, split_of, varied_contexts
from .controller import AsaParams
from .gates import ProbeGate, fit_gate, fpr_threshold
from .inputs import inputs, layer_params, states
from .prompt import PromptBuilder

BFCL_VALID_SHARE = 0.3
CACHE = "capture-cache"  # under the run directory: context states kept across reruns of the gate stage
FOLDS = 3
SLACK = 0.02  # when no gate meets max_fpr on VALID: the best F1 within this of the lowest false-call rate


def context_examples(c: object, data: object) -> list[ContextExample]:
    """The gate data with the tool list in the context that ``gate_data`` names (see the module docstring)."""
    out: list[ContextExample] = []
    items = []
    if "bfcl" in c.gate_data:
        from ..data.bfcl import FIT_CATEGORIES, load_bfcl

        items = [it for cat in FIT_CATEGORIES for it in load_bfcl(cat)]
    if "varied" in c.gate_data:
        rows = [e for s in ("cal", "train", "valid") for e in data.examples[s]]
        out += varied_contexts(
            rows, data.tools, data.domain_tool, [it.functions for it in items], seed=c.seed
        )
    if items:
        out += bfcl_contexts(items, seed=c.seed)
    return out


def context_split(e: ContextExample, seed: int = 0) -> str:
    """``fit`` or ``valid``: a run prompt's contexts follow its split (VALID -> valid), BFCL items a hash."""
    if e.source.startswith("bfcl:"):
        return split_of(e.group, BFCL_VALID_SHARE, seed)
    return "valid" if e.source.split(":")[1] == "valid" else "fit"


def render_contexts(lm: object, c: object, data: object, rows: list[ContextExample]) -> list[str]:
    """Each context example as the model reads it: the run's prompt (few-shot turns, call format) with its own tools."""
    shots = data.builder().few_shot
    texts = []
    for e in rows:
        pb = PromptBuilder(
            list(e.tools), call_format=c.call_format, few_shot=shots, use_template_tools=c.use_template_tools
        )
        tools = list(e.tools) if c.use_template_tools else None
        texts += render_prompts(lm.tokenizer, [pb.messages(e.messages)], tools=tools)
    return texts


def _folds(groups: list[str], k: int, seed: int) -> np.ndarray:
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {g: int(order[i] % k) for i, g in enumerate(uniq)}
    return np.array([fold_of[g] for g in groups])


def _metrics(y: np.ndarray, pred: np.ndarray, source: list[str]) -> dict:
    m = trigger_metrics(y, pred)
    by = {}
    for s in sorted(set(source)):
        idx = np.array([x == s for x in source])
        mm = trigger_metrics(y[idx], pred[idx])
        by[s] = {
            "n": int(idx.sum()),
            "call_rate": float(pred[idx].mean()),
            "fpr": mm["fpr"],
            "recall": mm["recall"],
        }
    return {
        "f1": m["f1"],
        "fpr": m["fpr"],
        "precision": m["precision"],
        "recall": m["recall"],
        "by_source": by,
    }


def _source(e: ContextExample) -> str:
    base = "bfcl" if e.source.startswith("bfcl:") else "varied"
    return f"{base}:{e.kind}"


@dataclass
class GateSet:
    """Rows a gate is fitted or chosen on: states [N, layers, d] (layer k at index k), labels, where each row comes
    from (``source``), the request it renders (``group``), its domain and the names of the tools it offers."""

    h: torch.Tensor
    y: np.ndarray
    source: list[str]
    group: list[str]
    domain: list[str | None]
    offered: list[frozenset]

    def subset(self, keep: np.ndarray | list[bool]) -> GateSet:
        keep = np.asarray(keep, dtype=bool)
        idx = np.nonzero(keep)[0]
        pick = [self.source, self.group, self.domain, self.offered]
        return GateSet(self.h[torch.from_numpy(idx)], self.y[idx], *[[v[i] for i in idx] for v in pick])


def gate_sets(
    lm: object,
    c: object,
    data: object,
    fixed: dict[str, torch.Tensor],
    layer: int,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[GateSet, GateSet, list[ContextExample]]:
    """(fit, valid) rows: the run's CAL+TRAIN (VALID) prompts with its tools (``fixed[split]``: their states), plus
    the context examples of ``gate_data`` with their own tools (captured; ``cache_dir`` keeps them for a rerun)."""
    rows = context_examples(c, data)
    fixed = {s: fixed[s][:, : layer + 1] for s in ("cal", "train", "valid")}
    if rows:
        texts = render_contexts(lm, c, data, rows)
        # The tool list opens the system prompt, so contexts share a prefix only with those offering the same
        # tools: captured per tool list, each group's system prompt and few-shot turns are computed once (the
        # shared-prefix path is exact); with one capture for all, only the first few tokens were shared.
        groups: dict[tuple, list[int]] = {}
        for i, e in enumerate(rows):
            groups.setdefault(tuple(json.dumps(t, sort_keys=True) for t in e.tools), []).append(i)
        h_ctx = torch.empty(0)
        for idx in tqdm(
            list(groups.values()), desc="gate data by tool list", disable=not progress, leave=False
        ):
            acts = capture(
                lm,
                [texts[i] for i in idx],
                layers=list(range(layer + 1)),
                sites=c.site,
                chat=False,
                batch_size=c.batch_size,
                batch_tokens=c.batch_tokens,
                progress=False,
                cache_dir=cache_dir,
            )
            h = torch.stack([acts[(k, c.site)] for k in range(layer + 1)], dim=1)
            if not h_ctx.numel():
                h_ctx = torch.zeros(len(rows), *h.shape[1:], dtype=h.dtype)
            h_ctx[idx] = h
    else:
        h_ctx = torch.zeros(0, layer + 1, fixed["cal"].shape[-1])
    split = [context_split(e, c.seed) for e in rows]
    all_tools = frozenset(tool_spec(t)["name"] for t in data.tools)

    def part(which: str) -> GateSet:
        own = ("cal", "train") if which == "fit" else ("valid",)
        idx = [i for i, x in enumerate(split) if x == which]
        ex = [e for s in own for e in data.examples[s]]
        return GateSet(
            torch.cat([fixed[s] for s in own] + [h_ctx[idx]]),
            np.array([e.label for e in ex] + [rows[i].label for i in idx], dtype=int),
            [f"run:{e.split}" for e in ex] + [_source(rows[i]) for i in idx],
            [e.id for e in ex] + [rows[i].group for i in idx],
            [e.domain for e in ex] + [rows[i].meta.get("domain") for i in idx],
            [all_tools] * len(ex) + [frozenset(tool_spec(t)["name"] for t in rows[i].tools) for i in idx],
        )

    return part("fit"), part("valid"), rows


def choose_gate(
    c: object, layer: int, tau: float, fit: GateSet, valid: GateSet, domain: AsaParams | None
) -> tuple[dict, list[dict], dict]:
    """Every candidate gate of ``c.gates`` scored on ``valid`` (probe gates fitted on ``fit`` per ``c.gate_cs``,
    calibrated out-of-fold to ``c.gate_fpr``); (chosen, candidates, fitted probe gates by (kind, c))."""
    cands, fitted = [], {}
    if "domain" in c.gates and domain is not None:
        pv = domain.p_tool(valid.h[:, layer]).numpy()
        cands.append(
            {"kind": "domain", "c": c.probe_c, "threshold": None, **_metrics(valid.y, pv > tau, valid.source)}
        )
    folds = _folds(fit.group, FOLDS, c.seed)
    cross = all(len(set(fit.y[folds != k])) == 2 for k in range(FOLDS))
    for kind in [k for k in c.gates if k != "domain"]:
        for cc in c.gate_cs:
            full = fit_gate(kind, layer, fit.h, fit.y, cc, c.seed)
            oof = (
                np.zeros(len(fit.y)) if cross else full.logit(fit.h).numpy()
            )  # in-sample when a fold lacks a class
            for k in range(FOLDS) if cross else ():
                tr = folds != k
                oof[~tr] = fit_gate(kind, layer, fit.h[tr], fit.y[tr], cc, c.seed).logit(fit.h[~tr]).numpy()
            thr = fpr_threshold(oof[fit.y == 0], c.gate_fpr)
            g = full.calibrated(thr, tau)
            fitted[(kind, cc)] = g
            pv = g.prob(valid.h).numpy()
            cands.append(
                {
                    "kind": kind,
                    "c": cc,
                    "threshold": thr,
                    "calibration": "out-of-fold" if cross else "in-sample",
                    "calibration_fpr": float((oof[fit.y == 0] > thr).mean()),
                    **_metrics(valid.y, pv > tau, valid.source),
                }
            )
    if not cands:
        raise ValueError(f"no gate candidates: gates={list(c.gates)}")
    return pick_gate(cands, c.max_fpr, int(valid.y.sum())), cands, fitted


def pick_gate(cands: list[dict], max_fpr: float, n_pos: int) -> dict:
    """The candidate with the best VALID F1 among those meeting ``max_fpr`` (else within ``SLACK`` of the lowest
    false-call rate); F1s within one VALID tool prompt's worth (1 / ``n_pos``) of the best count as tied, and the
    most regularised gate among them wins (smallest C, then fewer false calls). Without the tolerance a float-level
    change (another batch size) flipped the choice between near-tied regularisations."""
    low = min(x["fpr"] for x in cands)
    ok = [x for x in cands if x["fpr"] <= max_fpr] or [x for x in cands if x["fpr"] <= low + SLACK]
    top = max(x["f1"] for x in ok)
    tied = [x for x in ok if x["f1"] >= top - 1.0 / max(1, n_pos)]
    return min(tied, key=lambda x: (x["c"], x["fpr"], -x["f1"]))


def stage_gate(ctx: StageContext) -> dict:
    c, data = ctx.config, inputs(ctx)
    best = ctx.result("tune")["best"]
    layer, tau = best["layer"], best["tau"]
    fixed = {s: states(ctx, s) for s in ("cal", "train", "valid")}
    lm = ctx.lm if c.gate_data else None
    fit, valid, rows = gate_sets(lm, c, data, fixed, layer, ctx.runner.root / CACHE, ctx.progress)
    with open(ctx.out / "contexts.jsonl", "w") as f:
        for e in rows:
            row = {
                "id": e.id,
                "label": e.label,
                "source": e.source,
                "kind": e.kind,
                "split": context_split(e, c.seed),
            }
            f.write(json.dumps({**row, "tools": [tool_spec(t)["name"] for t in e.tools]}) + "\n")
    chosen, cands, fitted = choose_gate(c, layer, tau, fit, valid, layer_params(ctx, layer))
    if chosen["kind"] != "domain":
        save_tensors(ctx.out / "gate.safetensors", fitted[(chosen["kind"], chosen["c"])].tensors())
    return {
        "chosen": {k: chosen[k] for k in ("kind", "c", "threshold", "f1", "fpr")},
        "candidates": cands,
        "layer": layer,
        "tau": tau,
        "gate_data": list(c.gate_data),
        "fit_sources": sorted(
            {":".join(e.source.split(":")[:2]) for e in rows if context_split(e, c.seed) == "fit"}
            | {"run:cal", "run:train"}
        ),
        "n_fit": int(len(fit.y)),
        "n_valid": int(len(valid.y)),
        "selection": (
            f"max VALID F1 among gates with VALID false-call rate <= {c.max_fpr} (else within {SLACK} of the "
            "lowest; F1s within one VALID tool prompt's worth tied, the smallest C wins); probe gates' "
            f"thresholds calibrated to {c.gate_fpr} false calls on out-of-fold fit scores ({FOLDS} folds by request)"
        ),
    }


def gate_lines(res: dict) -> list[str]:
    """The report's lines on the gate: the chosen one, and every candidate on VALID (false-call rate per source)."""
    ch = res["chosen"]
    srcs = sorted({k for x in res["candidates"] for k in x["by_source"]})
    lines = [
        f"- gate: `{ch['kind']}`"
        + (f" (C={ch['c']:g}, calibrated threshold {ch['threshold']:.3f})" if ch["kind"] != "domain" else "")
        + f", VALID F1 {ch['f1']:.3f} / false-call rate {ch['fpr']:.3f}; {res['selection']}; gate data: "
        + (", ".join(res["gate_data"]) or "the run's prompts alone")
        + f" ({res['n_fit']} fit rows, {res['n_valid']} VALID rows)",
        "",
        "| gate | C | VALID F1 | VALID FPR | " + " | ".join(f"{s} call rate" for s in srcs) + " |",
        "|---|---|---|---|" + "---|" * len(srcs),
    ]
    for x in res["candidates"]:
        rates = [f"{x['by_source'][s]['call_rate']:.3f}" if s in x["by_source"] else "–" for s in srcs]
        lines.append(
            f"| {x['kind']} | {x['c']:g} | {x['f1']:.3f} | {x['fpr']:.3f} | " + " | ".join(rates) + " |"
        )
    return lines


def chosen_point(ctx: StageContext) -> dict:
    """The tuned operating point (tune's ``best``) with the gate chosen on VALID."""
    return {**ctx.result("tune")["best"], "gate": ctx.result("gate")["chosen"]["kind"]}


def chosen_params(ctx: StageContext, best: dict) -> AsaParams:
    """The fitted parameters at the chosen layer, carrying the chosen probe gate (if not ``domain``)."""
    params = layer_params(ctx, best["layer"])
    if best.get("gate", "domain") != "domain":
        params.gate = ProbeGate.from_tensors(
            load_tensors(ctx.path("gate") / "gate.safetensors"), best["layer"]
        )
    return params
