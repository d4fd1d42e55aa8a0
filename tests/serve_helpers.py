"""Helpers for the serve/UI tests: a real uvicorn server on a loopback port in a thread, a tiny ASA asset, and
(until steerlab.generation.generate gains per-row sampling and ``on_token``) a stand-in for those arguments."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

TINY_ASA = dict(
    model="tiny",
    limit_per_cell=3,
    alphas=[0.5],
    taus=[0.6],
    betas=[0.0],
    n_top_layers=1,
    extra_layers=[],
    max_new_tokens_decision=4,
    max_new_tokens_call=6,
    batch_size=8,
    n_boot=50,
)


def generate_has_streaming() -> bool:
    from steerlab.generation import generate

    return "on_token" in inspect.signature(generate).parameters


def install_generate_stub(monkeypatch) -> None:  # noqa: ANN001
    """Greedy generate with per-row max_new_tokens and on_token replayed after the fact; temperature, top_p and
    seed are accepted and ignored. Installed only when the real generate lacks those arguments."""
    import steerlab.generation as G

    if generate_has_streaming():
        return
    real = G.generate

    def stub(lm, prompts, *, max_new_tokens=64, temperature=0.0, top_p=1.0, seed=None, on_token=None, **kw):  # noqa: ANN001, ANN202, ARG001
        n = len(prompts)
        mnt = list(max_new_tokens) if isinstance(max_new_tokens, Sequence) else [max_new_tokens] * n
        gens = real(lm, prompts, max_new_tokens=max(mnt), **kw)
        out = []
        for i, g in enumerate(gens):
            ids = g.token_ids[: mnt[i]]
            prev = ""
            for k, t in enumerate(ids):
                text = lm.tokenizer.decode(ids[: k + 1], skip_special_tokens=False)
                if on_token is not None:
                    on_token(i, t, text[len(prev):])
                prev = text
            why = "length" if len(g.token_ids) > mnt[i] else g.stopped_by
            out.append(G.Generation(prev, ids, g.prompt_tokens, why))
        return out

    monkeypatch.setattr(G, "generate", stub)


def running_server(app, wait_ready: bool = True):  # noqa: ANN001, ANN201
    from steerlab.serve.background import serve_in_thread

    return serve_in_thread(app, wait_ready=wait_ready)


_ASSETS: dict[int, str] = {}


def tiny_asset(root, lm) -> str:  # noqa: ANN001
    """A real ASA asset from the tiny pipeline (every stage, a few prompts per cell); built once per model."""
    if id(lm) in _ASSETS:
        return _ASSETS[id(lm)]
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.pipeline import (
        AsaRun,
        stage_export,
        stage_extract,
        stage_fit,
        stage_sweep,
        stage_tune,
        stage_vectors,
    )

    r = AsaRun(AsaConfig(**TINY_ASA), root, progress=False)
    r._lm = lm
    for stage in (stage_extract, stage_sweep, stage_vectors, stage_fit, stage_tune):
        stage(r)
    _ASSETS[id(lm)] = stage_export(r)["path"]
    return _ASSETS[id(lm)]
