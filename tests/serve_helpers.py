"""Helpers for the serve/UI tests: a real uvicorn server on a loopback port in a thread and a tiny ASA asset."""

from __future__ import annotations

TINY_ASA = dict(
    model="tiny",
    limit_per_cell=3,
    strengths=[0.5],
    taus=[0.6],
    betas=[0.0],
    n_top_layers=1,
    extra_layers=[],
    max_new_tokens_call=6,
    batch_size=8,
    n_boot=50,
)


def running_server(app, wait_ready: bool = True):  # noqa: ANN001, ANN201
    from steerlab.serve.background import serve_in_thread

    return serve_in_thread(app, wait_ready=wait_ready)


_ASSETS: dict[tuple, str] = {}


def tiny_asset(root, lm, gates: tuple[str, ...] = ("domain",)) -> str:  # noqa: ANN001
    """A real ASA asset from the tiny pipeline (every stage, a few prompts per cell); built once per model and gate
    set. The serve and UI tests check what a request's steering does when the gate opens, so by default the gate is
    the per-domain one: on the random tiny model the probe gates, calibrated to 5% false calls, stay closed on every
    prompt (a probe-gate asset is served in test_serve's own test)."""
    key = (id(lm), tuple(gates))
    if key in _ASSETS:
        return _ASSETS[key]
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.stages import runner
    from steerlab.stages import ModelHolder

    models = ModelHolder()
    models.put("tiny", lm)
    cfg = AsaConfig(**TINY_ASA, gates=list(gates))
    _ASSETS[key] = runner(cfg, root, progress=False, models=models).run("asset")["path"]
    return _ASSETS[key]
