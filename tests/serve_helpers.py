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


_ASSETS: dict[int, str] = {}


def tiny_asset(root, lm) -> str:  # noqa: ANN001
    """A real ASA asset from the tiny pipeline (every stage, a few prompts per cell); built once per model."""
    if id(lm) in _ASSETS:
        return _ASSETS[id(lm)]
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.stages import runner
    from steerlab.stages import ModelHolder

    models = ModelHolder()
    models.put("tiny", lm)
    _ASSETS[id(lm)] = runner(AsaConfig(**TINY_ASA), root, progress=False, models=models).run("asset")["path"]
    return _ASSETS[id(lm)]
