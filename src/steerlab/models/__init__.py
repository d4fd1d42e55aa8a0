"""Model loading and the architecture registry (layers and named sites)."""

from .loading import (
    EMBEDDED_DEFAULT,
    LoadedModel,
    ModelLoadError,
    check_layers,
    load_model,
    model_fingerprint,
    model_shape,
    wrap_model,
)
from .registry import SITE_DOC, SITES, ArchInfo, ArchitectureError, base_model, detect_architecture
from .sites import hook_site
from .text import left_pad, position_ids_from_mask, render_prompt, render_prompts, tokenize_texts
from .tiny import FAMILIES, tiny_model

__all__ = [
    "EMBEDDED_DEFAULT",
    "FAMILIES",
    "SITES",
    "SITE_DOC",
    "ArchInfo",
    "ArchitectureError",
    "LoadedModel",
    "ModelLoadError",
    "base_model",
    "check_layers",
    "detect_architecture",
    "hook_site",
    "left_pad",
    "load_model",
    "model_fingerprint",
    "model_shape",
    "position_ids_from_mask",
    "render_prompt",
    "render_prompts",
    "tiny_model",
    "tokenize_texts",
    "wrap_model",
]
