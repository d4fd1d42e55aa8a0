"""llama.cpp control vectors (GGUF) in and out of steerlab.

The format, as llama.cpp reads it (``common_control_vector_load_one`` in its ``common/common.cpp``, and
``llama_adapter_cvec`` in ``src/llama-adapter.cpp``): a GGUF file with ``general.architecture = "controlvector"``,
``controlvector.model_hint`` (a string llama.cpp does not check) and ``controlvector.layer_count``, and one 1-D F32
tensor ``direction.N`` per layer. ``direction.N`` is added, unscaled but for the user's ``--control-vector-scaled``
factor, to the output of decoder block N (0-based): each model graph calls ``build_cvec(cur, il)`` on the block's
output after the feed-forward residual add, just before naming it ``l_out``. That is **steerlab layer N** (site
``block``, = HF ``hidden_states[N+1]``). llama.cpp keeps no tensor for block 0: the loader rejects ``direction.0``
("invalid (zero) direction tensor layer index") and skips the whole file, so block 0's output cannot be steered
from a control vector. llama.cpp adds the vectors at every position of every forward (prompt and generated),
ungated; steerlab reproduces that with ``policy="all"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..base import atomic_path
from .store import AssetError, load_asset
from .vector_asset import LAYER_CONVENTION, SteeringVectorAsset

ARCH = "controlvector"
LLAMACPP_APPLIES = (
    "llama.cpp adds direction.N to the output of decoder block N (= steerlab layer N) at every position of every "
    "forward pass (prompt and generated tokens), ungated and unrouted"
)
LAYER0_REASON = (
    "llama.cpp cannot steer layer 0: its control-vector loader rejects a direction.0 tensor ('invalid (zero) "
    "direction tensor layer index') and skips the whole file, and it allocates no control tensor for block 0"
)


class ControlVectorError(AssetError):
    """A control-vector file or export request that llama.cpp (or steerlab) cannot use as asked."""


@dataclass
class ControlVector:
    """The contents of a control-vector file: ``directions[N]`` is added at the output of block N."""

    directions: dict[int, torch.Tensor]
    model_hint: str = ""
    layer_count: int | None = None
    metadata: dict = field(default_factory=dict)  # other string/number keys found in the file

    @property
    def hidden_size(self) -> int:
        return next(iter(self.directions.values())).shape[0]


def _check_directions(directions: dict[int, torch.Tensor], hidden_size: int | None = None) -> int:
    if not directions:
        raise ControlVectorError("a control vector needs at least one direction")
    width = None
    for layer, v in directions.items():
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ControlVectorError(f"direction layers must be ints >= 1, got {layer!r}")
        if layer == 0:
            raise ControlVectorError(f"cannot write layer 0 into a llama.cpp control vector: {LAYER0_REASON}")
        if v.dim() != 1:
            raise ControlVectorError(f"direction for layer {layer} must be 1-D, got shape {tuple(v.shape)}")
        if hidden_size is not None and v.shape[0] != hidden_size:
            raise ControlVectorError(
                f"direction for layer {layer} has width {v.shape[0]}; the model's hidden size is {hidden_size}"
            )
        if width is not None and v.shape[0] != width:
            raise ControlVectorError(f"direction widths differ: {width} and {v.shape[0]} (layer {layer})")
        width = v.shape[0]
        if not torch.isfinite(v).all():
            bad = int((~torch.isfinite(v)).sum())
            raise ControlVectorError(f"direction for layer {layer} contains {bad} NaN/inf value(s)")
    return int(width)


def write_control_vector(
    path: str | Path,
    directions: dict[int, torch.Tensor],
    model_hint: str,
    metadata: dict[str, str | int | float] | None = None,
    hidden_size: int | None = None,
) -> Path:
    """Write a GGUF control vector llama.cpp loads (fp32 ``direction.N``), atomically (temp file, then rename).

    ``metadata`` adds ``steerlab.*`` string/number keys; llama.cpp ignores them, steerlab's import reads them back.
    ``controlvector.layer_count`` is the number of direction tensors, as llama.cpp's cvector-generator writes it.
    """
    import gguf

    _check_directions(directions, hidden_size)
    path = Path(path)
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(str(tmp), ARCH)
        w.add_string(f"{ARCH}.model_hint", model_hint)
        w.add_int32(f"{ARCH}.layer_count", len(directions))
        for key, val in (metadata or {}).items():
            name = f"steerlab.{key}"
            if isinstance(val, bool) or not isinstance(val, (str, int, float)):
                raise ControlVectorError(
                    f"metadata {key!r} must be a string or a number, got {type(val).__name__}"
                )
            if isinstance(val, str):
                w.add_string(name, val)
            elif isinstance(val, int):
                w.add_int64(name, val)
            else:
                w.add_float64(name, val)
        for layer in sorted(directions):
            arr = directions[layer].detach().to(torch.float32).cpu().numpy().astype(np.float32, copy=True)
            w.add_tensor(f"direction.{layer}", arr, raw_dtype=gguf.GGMLQuantizationType.F32)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path


def _field_value(f: object) -> object:
    """A scalar or string GGUF field's value (works across gguf-py versions); arrays give None."""
    import gguf

    types = list(getattr(f, "types", []))
    if not types or types[0] == gguf.GGUFValueType.ARRAY:
        return None
    part = f.parts[f.data[0]]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    val = part[0].item() if hasattr(part[0], "item") else part[0]
    return val


def read_control_vector(path: str | Path, hidden_size: int | None = None) -> ControlVector:
    """Read and check a control-vector GGUF (from steerlab, llama.cpp's cvector-generator, repeng, ...)."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ControlVectorError(f"control-vector file {path} does not exist")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # gguf-py raises ValueError/struct errors of its own
        raise ControlVectorError(f"{path} is not a readable GGUF file: {err}") from None
    fields = {name: _field_value(f) for name, f in reader.fields.items()}
    arch = fields.get("general.architecture")
    if arch != ARCH:
        raise ControlVectorError(
            f"{path} has general.architecture {arch!r}; a llama.cpp control vector has {ARCH!r} "
            "(is this a model file rather than a control vector?)"
        )
    directions: dict[int, torch.Tensor] = {}
    for t in reader.tensors:
        prefix, _, idx = t.name.partition(".")
        if prefix != "direction" or not idx.isdigit():
            raise ControlVectorError(f"{path}: tensor {t.name!r} is not named direction.<layer>")
        layer = int(idx)
        if layer == 0:
            raise ControlVectorError(f"{path} holds direction.0, which llama.cpp refuses: {LAYER0_REASON}")
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ControlVectorError(
                f"{path}: tensor {t.name} is {t.tensor_type.name}; llama.cpp control vectors are F32"
            )
        dims = [int(x) for x in t.shape if int(x) != 1] or [1]
        if len(dims) != 1:
            raise ControlVectorError(f"{path}: tensor {t.name} has shape {list(t.shape)}; directions are 1-D")
        directions[layer] = torch.from_numpy(np.array(t.data, dtype=np.float32).reshape(-1))
    if not directions:
        raise ControlVectorError(f"{path} holds no direction tensors")
    _check_directions(directions, hidden_size)
    extra = {
        k[len("steerlab.") :]: v for k, v in fields.items() if k.startswith("steerlab.") and v is not None
    }
    lc = fields.get(f"{ARCH}.layer_count")
    return ControlVector(
        directions=directions,
        model_hint=str(fields.get(f"{ARCH}.model_hint") or ""),
        layer_count=int(lc) if lc is not None else None,
        metadata=extra,
    )


def _unit(v: torch.Tensor, what: str) -> torch.Tensor:
    n = float(v.norm())
    if not math.isfinite(n) or n == 0:
        raise ControlVectorError(f"{what} has norm {n}; cannot normalise it")
    return v / n


def asa_direction(
    tensors: dict[str, torch.Tensor], manifest: dict, domain: str | None
) -> tuple[torch.Tensor, str]:
    """The ungated vector an ASA asset adds for a '+1' gate: strength * mean_norm * unit(its direction).

    The direction is the asset's own kind (``manifest['direction']``): a behaviour direction (``grad``, ``behav``:
    tensor ``dir.<kind>``) or the global mean difference (``global``), both one vector whatever the domain; or the
    paper's ``asa``, unit(v_domain + beta * v_global), which depends on the domain the router picks, so ``domain``
    must name one. Assets written before the manifest named a direction meant ``asa``.
    """
    kind = manifest.get("direction", "asa")
    scale = float(manifest["strength"]) * float(manifest["mean_norm"])
    domains = list(manifest.get("domains", []))
    if domain is not None and domain not in domains:
        raise ControlVectorError(
            f"unknown domain {domain!r}; this ASA asset has domains {', '.join(domains)}"
        )
    if kind == "asa":
        if domain is None:
            raise ControlVectorError(
                "this ASA asset's direction is unit(v_domain + beta * v_global), one per routed domain, and "
                f"llama.cpp has no router: pick one with --domain ({', '.join(domains)})"
            )
        beta = float(manifest.get("beta", 0.0))
        v = tensors[f"v_domain.{domain}"] + beta * tensors["v_global"]
        return scale * _unit(
            v, f"v_domain.{domain} + beta * v_global"
        ), f"unit(v_domain.{domain} + {beta} * v_global)"
    if domain is not None:
        raise ControlVectorError(
            f"this ASA asset's direction ({kind!r}) is the same for every domain; leave out --domain"
        )
    if kind == "global":
        return scale * _unit(tensors["v_global"], "v_global"), "unit(v_global)"
    key = f"dir.{kind}"
    if key not in tensors:
        raise ControlVectorError(f"the manifest names direction {kind!r} but the asset has no tensor {key!r}")
    return scale * _unit(tensors[key], key), f"unit({key})"


def asa_not_expressed(manifest: dict) -> list[str]:
    """What an ASA asset does that a llama.cpp control vector (one vector added at every position) cannot."""
    action = manifest.get("action", "steer")
    lost = ["the gate (router + probes decide per prompt whether and which way to push)"]
    if "prefill" in action:
        lost.append("the prefill action (an open gate starts the reply with the call marker)")
    on_close = manifest.get("on_close", "push")
    if on_close == "forbid":
        lost.append("forbid on close (a closed gate bans the call marker)")
    elif on_close == "push" and "steer" in action:
        lost.append("the push away from a call when the gate closes")
    if manifest.get("constrain", "none") != "none":
        lost.append(f"schema-constrained calls (constrain={manifest['constrain']!r})")
    lost.append("the position policy (ASA adds once, at the last prompt token; llama.cpp at every position)")
    return lost


def asset_to_directions(
    asset: str | Path, domain: str | None = None, all_positions: bool = False, push_only: bool = False
) -> tuple[dict[int, torch.Tensor], dict]:
    """What llama.cpp should add per layer for a steerlab asset, and the metadata that says where it came from."""
    tensors, manifest = load_asset(asset)
    kind = manifest.get("kind")
    meta: dict[str, str | int | float] = {
        "source_asset_kind": str(kind),
        "layer_convention": LAYER_CONVENTION,
        "applied_by_llamacpp": LLAMACPP_APPLIES,
    }
    if manifest.get("model"):
        meta["model"] = str(manifest["model"])
    if manifest.get("model_fingerprint"):
        meta["model_fingerprint"] = str(manifest["model_fingerprint"])
    if kind == "asa":
        if domain is not None and domain not in manifest.get("domains", []):
            raise ControlVectorError(
                f"unknown domain {domain!r}; this ASA asset has domains {', '.join(manifest.get('domains', []))}"
            )
        if manifest.get("site", "block") != "block":
            raise ControlVectorError(
                f"this ASA asset steers site {manifest['site']!r}; llama.cpp control vectors add to block outputs "
                "only (site 'block')"
            )
        action = manifest.get("action", "steer")
        if "steer" not in action and not push_only:
            raise ControlVectorError(
                f"this ASA asset's action is {action!r}: it never pushes the state, it starts the reply with the "
                "call marker when its gate opens, which a control vector cannot express. Pass push_only=True (CLI: "
                "--push-only) to export its direction as an ungated push anyway"
            )
        layer = int(manifest["layer"])
        vec, what = asa_direction(tensors, manifest, domain)
        lost = asa_not_expressed(manifest)
        meta.update(
            {
                "asa_direction": what,
                "asa_direction_kind": str(manifest.get("direction", "asa")),
                "asa_action": str(action),
                "asa_strength": float(manifest["strength"]),
                "asa_mean_norm": float(manifest["mean_norm"]),
                "asa_note": (
                    "ASA gates this vector per prompt (+1/-1/0 from a router and per-domain probes) and adds it "
                    "once at the last prompt token; llama.cpp cannot: it adds strength*mean_norm*direction at every "
                    "position of every prompt, ungated"
                ),
                "asa_not_expressed": "; ".join(lost),
            }
        )
        directions = {layer: vec}
    elif kind == "steering_vector":
        from .vector_asset import load_vector_asset

        sv = load_vector_asset(asset)
        if sv.site != "block":
            raise ControlVectorError(
                f"this asset steers site {sv.site!r}; llama.cpp control vectors add to block outputs only "
                "(site 'block')"
            )
        if sv.policy != "all" and not all_positions:
            raise ControlVectorError(
                f"this asset uses position policy {sv.policy!r}; llama.cpp applies control vectors at every "
                "position (policy 'all'). Pass all_positions=True (CLI: --all-positions) to export it anyway"
            )
        directions = {layer: sv.effective(layer) for layer in sv.layers}
        meta["steerlab_policy"] = sv.policy
        meta["coef_folded_in"] = float(sv.coef)
    else:
        raise ControlVectorError(
            f"{asset} is a {kind!r} asset; only 'steering_vector' and 'asa' assets export to a control vector"
        )
    if 0 in directions:
        raise ControlVectorError(f"{asset} steers layer 0, and {LAYER0_REASON}")
    return directions, meta


def export_control_vector(
    asset: str | Path,
    out: str | Path,
    *,
    domain: str | None = None,
    model_hint: str | None = None,
    all_positions: bool = False,
    push_only: bool = False,
) -> dict:
    """``steerlab gguf export``: a steering-vector or ASA asset as a llama.cpp control vector. For an ASA asset the
    result's ``asa_not_expressed`` lists what the file cannot do (the CLI prints it as a warning)."""
    _, manifest = load_asset(asset)
    directions, meta = asset_to_directions(
        asset, domain=domain, all_positions=all_positions, push_only=push_only
    )
    hint = model_hint or str(manifest.get("model_type") or manifest.get("model") or "")
    write_control_vector(out, directions, hint, meta, hidden_size=manifest.get("hidden_size"))
    return {
        "path": str(out),
        "layers": sorted(directions),
        "norms": {int(k): round(float(v.norm()), 4) for k, v in directions.items()},
        "model_hint": hint,
        **meta,
    }


def import_control_vector(
    path: str | Path,
    out: str | Path | None = None,
    *,
    hidden_size: int | None = None,
    n_layers: int | None = None,
    model: str | None = None,
) -> SteeringVectorAsset:
    """``steerlab gguf import``: a control vector as a ``steering_vector`` asset (coef 1, site block, policy all).

    Give ``hidden_size``/``n_layers`` (e.g. from the model it is meant for) to check it fits before saving.
    """
    from .vector_asset import save_vector_asset

    cv = read_control_vector(path, hidden_size)
    if n_layers is not None:
        bad = [k for k in cv.directions if k >= n_layers]
        if bad:
            raise ControlVectorError(
                f"{path} has directions for layers {bad}, out of range for a model with {n_layers} layers "
                f"(valid 1..{n_layers - 1}; llama.cpp would silently ignore them)"
            )
    info = {
        "source": {
            "kind": "llama.cpp control vector",
            "path": str(path),
            "model_hint": cv.model_hint,
            "layer_count": cv.layer_count,
            "steerlab_metadata": cv.metadata,
        },
        "applied_by_llamacpp": LLAMACPP_APPLIES,
        "note": "policy 'all' reproduces llama.cpp: the vectors are added at every position, ungated",
    }
    asset = SteeringVectorAsset(
        vectors=cv.directions,
        coef=1.0,
        site="block",
        policy="all",
        model=model or cv.metadata.get("model"),
        n_layers=n_layers,
        model_fingerprint=cv.metadata.get("model_fingerprint"),
        info=info,
    )
    if out is not None:
        save_vector_asset(out, asset)
    return asset


def llamacpp_buffer(cv: ControlVector, n_layer: int, strength: float = 1.0) -> np.ndarray:
    """The flat float buffer llama.cpp's loader builds and hands to ``llama_set_adapter_cvec``.

    ``common_control_vector_load_one`` stores ``direction.N * strength`` at offset ``(N - 1) * n_embd`` (no slot for
    layer 0) and ``llama_adapter_cvec::apply`` copies slot ``il - 1`` into the tensor it adds after block ``il``,
    for ``il`` in 1..n_layer-1; directions for blocks past the model's last are dropped. llama-cpp-python exposes only
    ``llama_set_adapter_cvec``, so this is what a Python caller passes (with il_start=1, il_end=n_layer).
    """
    n_embd = cv.hidden_size
    top = max(k for k in cv.directions if k < n_layer) if any(k < n_layer for k in cv.directions) else 0
    buf = np.zeros(n_embd * top, dtype=np.float32)
    for layer, v in cv.directions.items():
        if 1 <= layer < n_layer:
            buf[(layer - 1) * n_embd : layer * n_embd] += v.numpy().astype(np.float32) * np.float32(strength)
    return buf
