"""Architecture registry: where the decoder layers are and which named sites each layer exposes.

Layer numbers mean one thing everywhere in steerlab: ``layer k`` is the output of decoder block ``k`` (0-based),
i.e. ``hidden_states[k + 1]`` of Hugging Face (for the last layer HF returns the state *after* the final norm,
steerlab's ``block`` site is the state before it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..base import LayerError, UserError

SITES: tuple[str, ...] = ("block", "block_in", "attn", "mlp", "mlp_in")
SITE_DOC = {
    "block": "residual stream output of decoder block k (= HF hidden_states[k+1])",
    "block_in": "residual stream input of decoder block k (= HF hidden_states[k])",
    "attn": "output of the token mixer: self-attention, or LFM2's short convolution on conv layers",
    "mlp": "output of the MLP / feed-forward module",
    "mlp_in": "input of the MLP after its norm (post_attention_layernorm / ln_2 / ffn_norm)",
}

# Candidate attribute paths, tried in order. Families listed explicitly use the same lists but are reported as known.
_LAYER_PATHS = (
    "model.layers",
    "transformer.h",
    "model.decoder.layers",
    "gpt_neox.layers",
    "transformer.blocks",
    "model.language_model.layers",
    "language_model.model.layers",
)
_MIXER_NAMES = ("self_attn", "attn", "attention", "conv", "self_attention", "mixer")
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")

KNOWN_FAMILIES = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3": "model.layers",
    "gemma3_text": "model.layers",
    "lfm2": "model.layers",
    "gpt2": "transformer.h",
    "phi3": "model.layers",
    "olmo2": "model.layers",
}


class ArchitectureError(UserError):
    """The model's structure could not be mapped onto steerlab's layers and sites."""


def _get_attr_path(root: nn.Module, path: str) -> object | None:
    obj: object = root
    for part in path.split("."):
        if not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


@dataclass
class ArchInfo:
    """What steerlab needs to know about a decoder-only model's structure."""

    family: str
    layers_path: str
    n_layers: int
    hidden_size: int
    layer_kinds: list[str]  # "attention" or "conv" per layer
    mixer_names: list[str]  # attribute of the token mixer in each layer
    mlp_name: str
    discovered: bool = False  # True when found by discovery rather than the registry
    sliding_window: int | None = None  # attention window of sliding-window layers (Mistral, Gemma2/3), if any

    def check_layer(self, layer: int) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise LayerError(f"layer must be an int in 0..{self.n_layers - 1}, got {layer!r}")
        if not 0 <= layer < self.n_layers:
            raise LayerError(
                f"layer {layer} is out of range: this {self.family} model has {self.n_layers} layers "
                f"(valid layers 0..{self.n_layers - 1})"
            )
        return layer

    @staticmethod
    def check_site(site: str) -> str:
        if site not in SITES:
            raise LayerError(f"unknown site {site!r}; valid sites are {', '.join(SITES)}")
        return site

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return _get_attr_path(model, self.layers_path)  # type: ignore[return-value]

    def site_module(self, model: nn.Module, layer: int, site: str) -> tuple[nn.Module, str]:
        """The module to hook for (layer, site) and whether its 'input' or 'output' is the site."""
        self.check_layer(layer)
        self.check_site(site)
        block = self.layers(model)[layer]
        if site == "block":
            return block, "output"
        if site == "block_in":
            return block, "input"
        if site == "attn":
            return getattr(block, self.mixer_names[layer]), "output"
        mlp = getattr(block, self.mlp_name)
        return mlp, ("output" if site == "mlp" else "input")

    def describe(self) -> dict:
        return {
            "family": self.family,
            "layers_path": self.layers_path,
            "n_layers": self.n_layers,
            "hidden_size": self.hidden_size,
            "layer_kinds": self.layer_kinds,
            "sliding_window": self.sliding_window,
            "discovered": self.discovered,
            "layer_convention": "layer k = output of decoder block k (0-based) = HF hidden_states[k+1]",
        }


def _hidden_size(config: object) -> int | None:
    for key in ("hidden_size", "n_embd", "d_model"):
        val = getattr(config, key, None)
        if isinstance(val, int):
            return val
    text_cfg = getattr(config, "text_config", None)
    return _hidden_size(text_cfg) if text_cfg is not None else None


def _sliding_window(config: object) -> int | None:
    """The window of a model whose attention is (partly) sliding-window, else None."""
    if config is None:
        return None
    text_cfg = getattr(config, "text_config", None)
    if text_cfg is not None and text_cfg is not config and getattr(config, "sliding_window", None) is None:
        return _sliding_window(text_cfg)
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None
    kinds = getattr(config, "layer_types", None)
    if kinds:
        return window if any("sliding" in str(k) for k in kinds) else None
    return window if getattr(config, "use_sliding_window", True) else None


def detect_architecture(model: nn.Module) -> ArchInfo:
    """Map a HF causal LM onto layers and sites: the registry first, then discovery of common attribute paths."""
    config = getattr(model, "config", None)
    family = str(getattr(config, "model_type", type(model).__name__)).lower()
    tried: list[str] = []
    paths = ([KNOWN_FAMILIES[family]] if family in KNOWN_FAMILIES else []) + list(_LAYER_PATHS)
    layers = None
    layers_path = ""
    for path in paths:
        tried.append(path)
        obj = _get_attr_path(model, path)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            layers, layers_path = obj, path
            break
    if layers is None:
        raise ArchitectureError(
            f"cannot find the decoder layers of {type(model).__name__} (model_type {family!r}); tried attribute "
            f"paths {', '.join(tried)}. Supported families: {', '.join(sorted(KNOWN_FAMILIES))}"
        )
    first = layers[0]
    mixer_names: list[str] = []
    kinds: list[str] = []
    for i, blk in enumerate(layers):
        name = next((n for n in _MIXER_NAMES if isinstance(getattr(blk, n, None), nn.Module)), None)
        if name is None:
            raise ArchitectureError(
                f"layer {i} ({type(blk).__name__}) has no token mixer; tried attributes {', '.join(_MIXER_NAMES)}"
            )
        mixer_names.append(name)
        kinds.append("conv" if name == "conv" else "attention")
    mlp_name = next((n for n in _MLP_NAMES if isinstance(getattr(first, n, None), nn.Module)), None)
    if mlp_name is None:
        raise ArchitectureError(
            f"layer 0 ({type(first).__name__}) has no MLP; tried attributes {', '.join(_MLP_NAMES)}"
        )
    hidden = _hidden_size(config)
    if hidden is None:
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        if emb is None or not isinstance(getattr(emb, "weight", None), torch.Tensor):
            raise ArchitectureError(
                f"cannot tell the hidden size of {type(model).__name__}: no hidden_size/n_embd "
                "in its config and no input embedding"
            )
        hidden = int(emb.weight.shape[1])
    return ArchInfo(
        family=family,
        layers_path=layers_path,
        n_layers=len(layers),
        hidden_size=int(hidden),
        layer_kinds=kinds,
        mixer_names=mixer_names,
        mlp_name=mlp_name,
        discovered=family not in KNOWN_FAMILIES,
        sliding_window=_sliding_window(config),
    )


def base_model(model: nn.Module, arch: ArchInfo) -> nn.Module:
    """The module that owns the decoder layers (LlamaModel, GPT2Model, ...): its forward sees the attention mask."""
    parent_path = arch.layers_path.rsplit(".", 1)[0]
    return _get_attr_path(model, parent_path)  # type: ignore[return-value]
