"""ASA stages that read the model's representation: extract, sweep (probe AUC per layer), vectors (directions per
candidate layer) and fit (router + per-domain probes, and a cross-fit gate that checks the gate on unseen data)."""

from __future__ import annotations

import numpy as np
import torch

from ..capture import capture
from ..generation import next_token_scores
from ..generation.rules import marker_start_ids
from ..probes import fit_probe, fit_router, layer_sweep
from ..runs import load_tensors, save_json, save_tensors
from ..stages import StageContext
from ..tools import format_spec
from ..vectors import get_estimator
from .controller import AsaParams
from .data import SPLITS
from .directions import behaviour_contrast, grad_directions
from .inputs import LAYER_CONVENTION, inputs, states


def stage_extract(ctx: StageContext) -> dict:
    """Last-prompt-token states at every layer for every split."""
    c, lm, data = ctx.config, ctx.lm, inputs(ctx)
    meta = {
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "site": c.site,
        "layer_convention": LAYER_CONVENTION,
        "prompt": data.builder().describe(),
        "splits": {},
    }
    for split in SPLITS:
        acts = capture(
            lm,
            data.messages(split),
            layers=list(range(lm.n_layers)),
            sites=c.site,
            positions="last",
            batch_size=c.batch_size,
            batch_tokens=c.batch_tokens,
            tools=data.chat_tools(),
            progress=ctx.progress,
        )
        save_tensors(
            ctx.out / f"{split}.safetensors",
            {"states": torch.stack([acts[(k, c.site)] for k in range(lm.n_layers)], dim=1)},
        )
        meta["splits"][split] = [e.__dict__ for e in data.examples[split]]
    save_json(ctx.out / "meta.json", meta)
    return {"n": {s: len(v) for s, v in data.examples.items()}, "n_layers": lm.n_layers}


def stage_sweep(ctx: StageContext) -> dict:
    """Probe AUC per layer (fit TRAIN, score VALID), the mean hidden norm per layer (CAL), candidate layers."""
    c, data = ctx.config, inputs(ctx)
    train, valid, cal = states(ctx, "train"), states(ctx, "valid"), states(ctx, "cal")
    n_layers = train.shape[1]
    aucs = layer_sweep(
        train, data.labels("train"), valid, data.labels("valid"), c=c.probe_c, progress=ctx.progress
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


def first_token_calls(ctx: StageContext, messages: list, marker_ids: list[int], conditions: dict) -> dict:
    """Per condition: (log P(the reply's first token can begin the marker), whether the greedy first token does)."""
    c, lm, data = ctx.config, ctx.lm, inputs(ctx)
    ids = torch.tensor(marker_ids)

    def reduce(logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        called = torch.isin(logits.argmax(-1).cpu(), ids).float()
        return torch.stack([torch.logsumexp(logp[:, ids.to(logp.device)], -1).cpu(), called], dim=-1)

    out = next_token_scores(
        lm,
        messages,
        conditions,
        batch_size=c.batch_size,
        batch_tokens=c.batch_tokens,
        tools=data.chat_tools(),
        progress=ctx.progress,
        desc="first token",
        reduce=reduce,
    )
    return {k: (v[:, 0], v[:, 1].bool()) for k, v in out.items()}


def stage_vectors(ctx: StageContext) -> dict:
    """Per candidate layer: the global and per-domain mean differences on CAL (the paper's directions) and the
    behaviour directions the config asks for (``grad``; ``behav`` from the plain model's own first tokens)."""
    c, data = ctx.config, inputs(ctx)
    layers = ctx.result("sweep")["candidate_layers"]
    cal, ex = states(ctx, "cal"), data.examples["cal"]
    lab = torch.tensor([e.label for e in ex])
    domains = sorted({e.domain for e in ex})
    estimate = get_estimator(c.estimator)
    tensors, notes = {}, {}
    for layer in layers:
        h = cal[:, layer]
        tensors[f"v_global.L{layer}"] = estimate(h[lab == 1], h[lab == 0], seed=c.seed)
        for d in domains:
            m = torch.tensor([e.domain == d for e in ex])
            tensors[f"v_domain.{d}.L{layer}"] = estimate(h[m & (lab == 1)], h[m & (lab == 0)], seed=c.seed)
    marker = format_spec(c.call_format).marker
    if {"grad", "behav"} & set(c.directions):
        marker_ids = marker_start_ids(ctx.lm.tokenizer, marker)
    if "grad" in c.directions:
        tool_msgs = [m for m, e in zip(data.messages("cal"), ex) if e.label == 1]
        grads = grad_directions(
            ctx.lm, tool_msgs, layers, marker_ids, site=c.site, tools=data.chat_tools(), progress=ctx.progress
        )
        tensors.update({f"dir.grad.L{k}": v for k, v in grads.items()})
    if "behav" in c.directions:
        rows = [(s, i) for s in ("cal", "train") for i, e in enumerate(data.examples[s]) if e.label == 1]
        msgs = {s: data.messages(s) for s in ("cal", "train")}
        _, called = first_token_calls(ctx, [msgs[s][i] for s, i in rows], marker_ids, {"plain": None})[
            "plain"
        ]
        st = {s: states(ctx, s) for s in ("cal", "train")}
        notes["behav_called"] = int(called.sum())
        notes["behav_tool_prompts"] = len(rows)
        for layer in layers:
            h = torch.stack([st[s][i, layer] for s, i in rows])
            v = behaviour_contrast(h, called)
            if v is not None:
                tensors[f"dir.behav.L{layer}"] = v
    save_tensors(ctx.out / "vectors.safetensors", tensors)
    kinds = sorted({k.split(".")[1] for k in tensors if k.startswith("dir.")})
    return {"domains": domains, "layers": layers, "estimator": c.estimator, "behaviour_kinds": kinds, **notes}


def _fit_gate(h: torch.Tensor, labels: np.ndarray, doms: list[str], domains: list[str], c: object):  # noqa: ANN202
    router = fit_router(h, doms, classes=domains, c=c.probe_c, seed=c.seed)
    probes = {}
    for d in domains:
        m = np.array([x == d for x in doms])
        probes[d] = fit_probe(h[torch.from_numpy(m)], labels[m], c=c.probe_c, seed=c.seed)
    return router, probes


def stage_fit(ctx: StageContext) -> dict:
    """Router (multiclass, standardised) and one probe per domain, per candidate layer, on ``gate_splits``; with
    CAL among them, also a cross-fit gate on TRAIN alone, so the gate can be checked on CAL, which it never saw."""
    c, data = ctx.config, inputs(ctx)
    vec = load_tensors(ctx.path("vectors") / "vectors.safetensors")
    vmeta = ctx.result("vectors")
    domains = vmeta["domains"]
    fit_states = {s: states(ctx, s) for s in c.gate_splits}
    labels = np.concatenate([data.labels(s) for s in c.gate_splits])
    doms = [d for s in c.gate_splits for d in data.domains(s)]
    crossfit = "cal" in c.gate_splits
    for layer in vmeta["layers"]:
        extra = {
            k.split(".")[1]: v for k, v in vec.items() if k.startswith("dir.") and k.endswith(f".L{layer}")
        }
        vd = {d: vec[f"v_domain.{d}.L{layer}"] for d in domains}
        h = torch.cat([fit_states[s][:, layer] for s in c.gate_splits])
        router, probes = _fit_gate(h, labels, doms, domains, c)
        params = AsaParams(layer, domains, router, probes, vd, vec[f"v_global.L{layer}"], 0.0, extra)
        save_tensors(ctx.out / f"params_L{layer}.safetensors", params.tensors())
        if crossfit:
            ht = states(ctx, "train")[:, layer]
            router, probes = _fit_gate(ht, data.labels("train"), data.domains("train"), domains, c)
            check = AsaParams(layer, domains, router, probes, vd, vec[f"v_global.L{layer}"], 0.0, extra)
            save_tensors(ctx.out / f"crossfit_L{layer}.safetensors", check.tensors())
    meta = {
        "domains": domains,
        "layers": vmeta["layers"],
        "gate_splits": list(c.gate_splits),
        "crossfit": crossfit,
    }
    save_json(ctx.out / "meta.json", meta)
    return meta
