"""The web app's steering-vector lab: two lists of prompts -> last-token states at every layer -> a held-out probe
AUC per layer, a mean-difference vector at a chosen layer, and baseline vs steered replies with it.

Free of Gradio so it can be tested directly. It works on a loaded ``steerlab.serve.engine.Engine``: the engine's
model, under the engine's lock (one model call at a time, shared with the chat side of the app and the server).
"""

from __future__ import annotations

import math

import torch

from ..config import LayerError
from ..serve.engine import Engine


def lab_states(engine: Engine, positive: list[str], negative: list[str]) -> torch.Tensor:
    """Last-prompt-token states at every layer for both lists, as chat prompts: ``[n, n_layers, d]``."""
    from ..capture import capture

    if len(positive) < 2 or len(negative) < 2:
        raise ValueError(
            f"give at least 2 prompts in each list (got {len(positive)} and {len(negative)}): "
            "a probe needs a training and a held-out half"
        )
    lm = engine.lm
    layers = list(range(lm.n_layers))
    with engine.lock:
        acts = capture(lm, positive + negative, layers, chat=True, progress=False)
    return torch.stack([acts[k] for k in layers], dim=1).float()


def lab_auc(states: torch.Tensor, n_pos: int, layer: int) -> float:
    """Held-out AUC of a probe at ``layer``, cross-validated so that every prompt is scored once while held out
    (``probes.cross_val_auc``: one split of a few prompts read AUC 0.0 at layers 2-7)."""
    from ..probes import cross_val_auc

    n_layers = states.shape[1]
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise LayerError(
            f"layer {layer!r} is out of range: the states hold {n_layers} layers (valid 0..{n_layers - 1})"
        )
    return cross_val_auc(states[:, layer], [1] * n_pos + [0] * (states.shape[0] - n_pos))


def lab_vector(engine: Engine, states: torch.Tensor, n_pos: int, layer: int) -> tuple[torch.Tensor, float]:
    """Unit mean-difference vector at ``layer`` and the mean hidden norm there (the strength unit)."""
    from ..capture import mean_norm
    from ..vectors import mean_difference

    engine.lm.arch.check_layer(layer)
    h = states[:, layer]
    return mean_difference(h[:n_pos], h[n_pos:]), float(mean_norm(h))


def lab_compare(
    engine: Engine,
    prompt: str,
    vector: torch.Tensor,
    layer: int,
    coef: float,
    policy: str = "all",
    max_tokens: int = 48,
) -> tuple[str, str]:
    """Baseline and steered reply to one chat prompt, in one batch (row 0 coef 0, row 1 ``coef``)."""
    from ..generation import generate
    from ..steering import steer

    if not math.isfinite(coef):
        raise ValueError(f"strength must be finite, got {coef}")
    lm = engine.lm
    with engine.lock, steer(lm, vector, layer=layer, coef=torch.tensor([0.0, coef]), policy=policy):
        gens = generate(
            lm, [prompt, prompt], chat=True, max_new_tokens=max_tokens, batch_size=2, progress=False
        )
    return gens[0].text, gens[1].text
