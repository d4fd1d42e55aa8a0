"""On-disk cache of captured activations: safetensors + a small JSON, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..base.files import atomic_path
from .activations import Activations


def _name(key: tuple[int, str]) -> str:
    return f"L{key[0]}.{key[1]}"


def save_cached(root: Path, cache_key: str, acts: Activations) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for key, val in acts.data.items():
        if isinstance(val, list):
            tensors[_name(key)] = torch.cat(val) if val else torch.zeros(0)
        else:
            tensors[_name(key)] = val.contiguous()
    meta = {"keys": [list(k) for k in acts.data], "positions": acts.positions, "lengths": acts.lengths}
    final = root / f"{cache_key}.safetensors"
    with atomic_path(final) as tmp:
        save_file(tensors, tmp, metadata={"steerlab": json.dumps(meta)})
    return final


def load_cached(
    root: Path, cache_key: str, keys: list[tuple[int, str]], positions: object
) -> Activations | None:
    from safetensors import safe_open

    path = root / f"{cache_key}.safetensors"
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["steerlab"])
        tensors = load_file(str(path))
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None
    lengths = meta["lengths"]
    data: dict = {}
    for key in keys:
        t = tensors.get(_name(key))
        if t is None:
            return None
        if positions == "all":
            data[key] = list(torch.split(t, lengths))
        else:
            data[key] = t
    return Activations(data=data, positions=meta["positions"], lengths=lengths)
