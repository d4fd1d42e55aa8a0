"""steerlab: representation engineering of LLM behaviour, tool calling first.

    import steerlab as sl

    lm = sl.load_model("smollm2-135m")                     # embedded default; or a hub id, a .gguf, a directory
    acts = sl.capture(lm, ["What is 12 times 7?", "Why is the sky blue?"], layers=[20], chat=True)
    v = sl.mean_difference(acts[20][:1], acts[20][1:])
    with sl.steer(lm, v, layer=20, coef=0.5 * sl.mean_norm(acts[20]), policy="prompt_last"):
        print(sl.generate(lm, ["What is 12 times 7?"], chat=True, max_new_tokens=20)[0].text)

Names are imported on first use, so ``import steerlab`` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    # models
    "load_model": "steerlab.models",
    "tiny_model": "steerlab.models",
    "wrap_model": "steerlab.models",
    "LoadedModel": "steerlab.models",
    "model_shape": "steerlab.models",
    # capture, steering, generation
    "capture": "steerlab.capture",
    "mean_norm": "steerlab.capture",
    "Activations": "steerlab.capture",
    "steer": "steerlab.steering",
    "splice": "steerlab.steering",
    "SteeringHandle": "steerlab.steering",
    "forward_phase": "steerlab.steering",
    "generate": "steerlab.generation",
    "generate_conditions": "steerlab.generation",
    "next_token_scores": "steerlab.generation",
    "Generation": "steerlab.generation",
    "GenerateOptions": "steerlab.generation",
    # probes and vectors
    "fit_probe": "steerlab.probes",
    "fit_router": "steerlab.probes",
    "layer_sweep": "steerlab.probes",
    "cross_val_auc": "steerlab.probes",
    "roc_auc": "steerlab.probes",
    "LogisticProbe": "steerlab.probes",
    "Router": "steerlab.probes",
    "mean_difference": "steerlab.vectors",
    "paired_pca": "steerlab.vectors",
    "random_direction": "steerlab.vectors",
    "get_estimator": "steerlab.vectors",
    "register_estimator": "steerlab.vectors",
    # tools
    "parse_tool_calls": "steerlab.tools",
    "render_tool_call": "steerlab.tools",
    "validate_call": "steerlab.tools",
    "ToolCall": "steerlab.tools",
    # assets
    "save_asset": "steerlab.assets",
    "load_asset": "steerlab.assets",
    # methods
    "AsaConfig": "steerlab.asa",
    "AsaSteerer": "steerlab.asa",
    "GatedSteering": "steerlab.asa",
    "GatedAction": "steerlab.asa",
    "TernaryGate": "steerlab.asa",
    "PasConfig": "steerlab.pas",
    "Transcoder": "steerlab.sae",
    "DeltaTranscoder": "steerlab.sae",
    # the spine
    "Config": "steerlab.config",
    "UserError": "steerlab.config",
    "Stage": "steerlab.stages",
    "Runner": "steerlab.stages",
}
__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> object:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'steerlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
