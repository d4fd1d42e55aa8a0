"""Steering assets: a directory with ``tensors.safetensors`` and ``manifest.json``. Loading runs no code.

The manifest records the sha256 of the tensor file and of its own content (every field: layer, strengths, norms,
thresholds...), so a truncated tensor file or an edited manifest fails loudly instead of steering wrongly. An asset
is written into a temporary directory that is renamed into place, so a half-written asset never exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from .. import __version__
from ..base import UserError, atomic_dir

log = logging.getLogger(__name__)
FORMAT = "steerlab-asset"
FORMAT_VERSION = 2
TENSORS, MANIFEST = "tensors.safetensors", "manifest.json"


class AssetError(UserError):
    """An asset is missing, damaged, or does not fit the model."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_asset_files(folder: Path, tensors: dict[str, torch.Tensor], manifest: dict) -> None:
    """Write the two files of an asset into ``folder`` (which the caller renames into place when complete)."""
    from safetensors.torch import save_file

    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise AssetError(f"tensor {name!r} contains NaN/inf; refusing to save it")
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(clean, str(folder / TENSORS))
    full = {
        **manifest,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "steerlab_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensors": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in clean.items()
        },
        "tensors_sha256": _sha256(folder / TENSORS),
    }
    full = json.loads(json.dumps(full))  # the digest is of what a reader will parse
    full["manifest_sha256"] = manifest_digest(full)
    (folder / MANIFEST).write_text(json.dumps(full, indent=2))


def save_asset(path: str | Path, tensors: dict[str, torch.Tensor], manifest: dict) -> Path:
    """An asset directory at ``path`` (safetensors + a JSON manifest), written under a temporary name and renamed
    when complete.

    Args:
        path: the asset's directory (replaced if it exists).
        tensors: the tensors to store; NaN or inf is refused.
        manifest: JSON-serialisable facts (layer, site, norm, model...); format, version and checksums are added.

    Returns:
        ``path``.
    """
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise AssetError(f"tensor {name!r} contains NaN/inf; refusing to save it")
    with atomic_dir(path) as tmp:
        write_asset_files(tmp, tensors, manifest)
    return Path(path)


def load_asset(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read an asset, checking that it is complete and unmodified (loading never runs code: no pickle).

    Args:
        path: the asset's directory.

    Returns:
        ``(tensors, manifest)``.

    Raises:
        AssetError: the directory is missing, incomplete, not a steerlab asset, of another format version, or
            changed after it was written.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise AssetError(f"asset {path} does not exist or is not a directory")
    for name in (MANIFEST, TENSORS):
        if not (path / name).is_file():
            raise AssetError(f"asset {path} is incomplete: {name} is missing")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except json.JSONDecodeError as err:
        raise AssetError(f"{path / MANIFEST} is not valid JSON: {err}") from None
    if manifest.get("format") != FORMAT:
        raise AssetError(f"{path} is not a steerlab asset (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise AssetError(
            f"{path} has asset format version {manifest.get('format_version')}; this steerlab reads "
            f"version {FORMAT_VERSION} (re-export the asset with this steerlab)"
        )
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise AssetError(
            f"{path / MANIFEST} was modified after the asset was written (its sha256 does not match): a changed "
            "field (layer, strength, norm, threshold...) would steer wrongly; re-export the asset instead of "
            "editing it"
        )
    digest = _sha256(path / TENSORS)
    if digest != manifest.get("tensors_sha256"):
        raise AssetError(
            f"{path / TENSORS} does not match its manifest (sha256 {digest[:12]}… vs "
            f"{str(manifest.get('tensors_sha256'))[:12]}…): the file is truncated or was modified"
        )
    try:
        tensors = load_file(str(path / TENSORS))
    except Exception as err:  # safetensors raises its own error types
        raise AssetError(f"{path / TENSORS} cannot be read: {err}") from None
    expected = manifest.get("tensors", {})
    if set(expected) != set(tensors):
        raise AssetError(f"{path}: tensors {sorted(tensors)} differ from the manifest's {sorted(expected)}")
    for name, t in tensors.items():
        if list(t.shape) != expected[name]["shape"]:
            raise AssetError(
                f"{path}: tensor {name!r} has shape {list(t.shape)}, manifest says {expected[name]['shape']}"
            )
        if not torch.isfinite(t).all():
            raise AssetError(f"{path}: tensor {name!r} contains NaN/inf")
    return tensors, manifest


def asset_size_bytes(path: str | Path) -> int:
    """Bytes of the asset's own two files."""
    return sum((Path(path) / f).stat().st_size for f in (TENSORS, MANIFEST) if (Path(path) / f).is_file())


def check_asset_compat(
    manifest: dict,
    *,
    hidden_size: int,
    n_layers: int,
    model_fingerprint: str | None = None,
    strict_fingerprint: bool = False,
) -> None:
    """Clear errors when an asset was made for a model of another shape; a fingerprint mismatch warns."""
    hs = manifest.get("hidden_size")
    if hs is not None and hs != hidden_size:
        raise AssetError(f"asset was made for hidden size {hs}, this model has {hidden_size}")
    nl = manifest.get("n_layers")
    if nl is not None and nl != n_layers:
        raise AssetError(f"asset was made for a model with {nl} layers, this model has {n_layers}")
    layers = manifest.get("layers", [manifest["layer"]] if "layer" in manifest else [])
    bad = [x for x in layers if not 0 <= int(x) < n_layers]
    if bad:
        raise AssetError(f"asset layer(s) {bad} out of range for a model with layers 0..{n_layers - 1}")
    fp = manifest.get("model_fingerprint")
    if model_fingerprint and fp and fp != model_fingerprint:
        msg = (
            f"asset fingerprint {fp} differs from this model's {model_fingerprint}: made for other weights (another "
            f"checkpoint, a finetune) or the same ones loaded in another dtype (asset: {manifest.get('model_dtype', '?')})"
        )
        if strict_fingerprint:
            raise AssetError(msg)
        log.warning(msg)
