"""A plain steering-vector asset: one vector per layer, added as ``coef * vector`` at the block output.

This is the kind that travels: it is what a llama.cpp control vector (or a repeng / steering-vectors vector) is,
so GGUF import and export go through it. Stored with ``save_asset`` (safetensors + JSON manifest, no code runs on
load); tensors are named ``vector.<layer>``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.registry import SITES
from .store import AssetError, check_asset_compat, load_asset, save_asset

KIND = "steering_vector"
LAYER_CONVENTION = "layer k = output of decoder block k (0-based) = HF hidden_states[k+1]"
POLICIES = ("prompt_last", "prompt_all", "generated", "all")  # the steering layer's position policies


@dataclass
class SteeringVectorAsset:
    """Vectors per layer; the intervention at layer k is ``coef * vectors[k]`` under ``policy`` at ``site``."""

    vectors: dict[int, torch.Tensor]
    coef: float = 1.0
    site: str = "block"
    policy: str = "all"
    model: str | None = None
    n_layers: int | None = None
    model_fingerprint: str | None = None
    info: dict = field(default_factory=dict)  # free-form provenance written into the manifest

    def __post_init__(self) -> None:
        if not self.vectors:
            raise AssetError("a steering-vector asset needs at least one layer's vector")
        if self.site not in SITES:
            raise AssetError(f"unknown site {self.site!r}; valid sites are {', '.join(SITES)}")
        if self.policy not in POLICIES:
            raise AssetError(f"unknown position policy {self.policy!r}; valid: {', '.join(POLICIES)}")
        if not math.isfinite(self.coef):
            raise AssetError(f"coef must be finite, got {self.coef}")
        widths = set()
        clean: dict[int, torch.Tensor] = {}
        for layer, v in sorted(self.vectors.items()):
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise AssetError(f"layer keys must be ints >= 0, got {layer!r}")
            if self.n_layers is not None and layer >= self.n_layers:
                raise AssetError(
                    f"layer {layer} is out of range for a model with {self.n_layers} layers "
                    f"(valid layers 0..{self.n_layers - 1})"
                )
            if not isinstance(v, torch.Tensor) or v.dim() != 1:
                raise AssetError(f"the vector of layer {layer} must be a 1-D tensor, got {_shape(v)}")
            if not torch.isfinite(v).all():
                bad = int((~torch.isfinite(v)).sum())
                raise AssetError(f"the vector of layer {layer} contains {bad} NaN/inf value(s)")
            widths.add(v.shape[0])
            clean[layer] = v.detach().to(torch.float32).cpu().contiguous()
        if len(widths) != 1:
            raise AssetError(f"all vectors must have the same width, got widths {sorted(widths)}")
        self.vectors = clean

    @property
    def hidden_size(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def effective(self, layer: int) -> torch.Tensor:
        """What is added at ``layer``: coef * vector (the form a llama.cpp control vector stores)."""
        return self.coef * self.vectors[layer]

    @contextlib.contextmanager
    def apply(self, lm: object, scale: float = 1.0) -> Iterator[list]:
        """Steer ``lm`` with every layer's vector at once (``scale`` multiplies ``coef``); handles removed on exit."""
        from ..steering import steer

        check_asset_compat(
            self.manifest(),
            hidden_size=lm.hidden_size,
            n_layers=lm.n_layers,
            model_fingerprint=lm.fingerprint,
        )
        handles = []
        try:
            for layer in self.layers:
                handles.append(
                    steer(lm, self.vectors[layer], layer, self.site, self.coef * scale, self.policy)
                )
            yield handles
        finally:
            for h in handles:
                h.remove()

    def manifest(self) -> dict:
        return {
            **self.info,
            "kind": KIND,
            "layers": self.layers,
            "coef": self.coef,
            "site": self.site,
            "policy": self.policy,
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "hidden_size": self.hidden_size,
            "n_layers": self.n_layers,
            "layer_convention": LAYER_CONVENTION,
            "applied_as": "hidden[layer] += coef * vector.<layer> at the positions the policy names",
        }


def _shape(v: object) -> str:
    return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else type(v).__name__


def save_vector_asset(path: str | Path, asset: SteeringVectorAsset) -> Path:
    """Write the asset atomically (safetensors + manifest with a checksum)."""
    tensors = {f"vector.{layer}": v for layer, v in asset.vectors.items()}
    return save_asset(path, tensors, asset.manifest())


_OWN_KEYS = (
    "kind",
    "layers",
    "coef",
    "site",
    "policy",
    "model",
    "model_fingerprint",
    "hidden_size",
    "n_layers",
    "layer_convention",
    "applied_as",
)
_STORE_KEYS = ("format", "format_version", "steerlab_version", "created", "tensors", "tensors_sha256")


def load_vector_asset(path: str | Path) -> SteeringVectorAsset:
    """Read a ``steering_vector`` asset; any other kind is refused with its name."""
    tensors, manifest = load_asset(path)
    if manifest.get("kind") != KIND:
        raise AssetError(f"{path} is a {manifest.get('kind')!r} asset, not a {KIND!r} asset")
    vectors = {}
    for name, t in tensors.items():
        prefix, _, idx = name.partition(".")
        if prefix != "vector" or not idx.isdigit():
            raise AssetError(f"{path}: unexpected tensor {name!r} (expected vector.<layer>)")
        vectors[int(idx)] = t
    if sorted(vectors) != sorted(manifest.get("layers", [])):
        raise AssetError(
            f"{path}: tensors for layers {sorted(vectors)}, manifest says {manifest.get('layers')}"
        )
    drop = set(_OWN_KEYS) | set(_STORE_KEYS)
    return SteeringVectorAsset(
        vectors=vectors,
        coef=float(manifest["coef"]),
        site=manifest["site"],
        policy=manifest["policy"],
        model=manifest.get("model"),
        n_layers=manifest.get("n_layers"),
        model_fingerprint=manifest.get("model_fingerprint"),
        info={k: v for k, v in manifest.items() if k not in drop},
    )
