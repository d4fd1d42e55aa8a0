"""PAS run configuration (YAML), validated field by field; any field can be overridden on the command line."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..config_keys import check_known_keys

METHODS = ("PASf", "iPASa", "iPASwo")
TARGETS = {"residual": "block", "mlp": "mlp", "self_attn": "attn", "post_attention_layernorm": "mlp_in"}


@dataclass
class PasConfig:
    seed: int = 42
    seeds: list[int] = field(default_factory=list)  # extra seeds for multi-seed aggregation
    device: str = "auto"
    dtype: str = "auto"
    quantization: str | None = None
    model_name: str = "smollm2-135m"
    max_sample_size: int = 300
    n_train_proportion: float = 0.5
    n_val_proportion: float = 0.2
    n_test_proportion: float = 0.3
    benchmarks: list[str] = field(default_factory=lambda: ["steerlab_mcq"])
    layers_to_try: list[int] | str = "all"
    steer_strengths: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    steer_target: str = "residual"
    icl_k: int = 0
    catastrophic_test: bool = False
    target_benchmark: str | None = None
    output_dir: str = "runs/pas"
    batch_size: int = 16
    use_chat_template: bool = False
    n_random_controls: int = 1
    n_boot: int = 2000

    def __post_init__(self) -> None:
        props = (self.n_train_proportion, self.n_val_proportion, self.n_test_proportion)
        if abs(sum(props) - 1) > 1e-6 or min(props) <= 0:
            raise ValueError(f"split proportions must be > 0 and sum to 1, got train/val/test = {props}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown method(s) {bad}; valid: {', '.join(METHODS)}")
        if self.steer_target not in TARGETS:
            raise ValueError(f"unknown steer_target {self.steer_target!r}; valid: {', '.join(TARGETS)}")
        if self.quantization not in (None, "4bit", "8bit"):
            raise ValueError(f"quantization must be null, '4bit' or '8bit', got {self.quantization!r}")
        if self.icl_k < 0:
            raise ValueError(f"icl_k must be >= 0, got {self.icl_k}")
        if any(not isinstance(s, (int, float)) for s in self.steer_strengths) or not self.steer_strengths:
            raise ValueError(
                f"steer_strengths must be a non-empty list of numbers, got {self.steer_strengths!r}"
            )
        if self.catastrophic_test and not self.target_benchmark:
            raise ValueError("catastrophic_test needs target_benchmark (the benchmark tested for forgetting)")
        if self.max_sample_size < 10:
            raise ValueError(f"max_sample_size must be >= 10, got {self.max_sample_size}")

    @property
    def site(self) -> str:
        return steer_target_to_site(self.steer_target)

    def layers(self, n_layers: int) -> list[int]:
        spec = self.layers_to_try
        if spec == "all":
            return list(range(n_layers))
        if isinstance(spec, str):
            try:
                start, stop, step = (int(x) if x else None for x in (spec.split(":") + [""] * 2)[:3])
            except ValueError:
                raise ValueError(
                    f"layers_to_try must be 'all', 'start:stop:step' or a list, got {spec!r}"
                ) from None
            out = list(range(n_layers))[slice(start, stop, step)]
        else:
            out = list(spec)
        bad = [x for x in out if not 0 <= x < n_layers]
        if bad or not out:
            raise ValueError(f"layers_to_try {bad or spec} out of range 0..{n_layers - 1}")
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def steer_target_to_site(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"unknown steer_target {target!r}; valid: {', '.join(TARGETS)}")
    return TARGETS[target]


def _check_types(data: dict) -> None:
    hints = typing.get_type_hints(PasConfig)
    for key, val in data.items():
        hint = hints[key]
        origin = typing.get_origin(hint)
        allowed = (
            typing.get_args(hint)
            if origin in (typing.Union, getattr(__import__("types"), "UnionType", None))
            else (hint,)
        )
        ok = False
        for a in allowed:
            base = typing.get_origin(a) or a
            if a is type(None) and val is None:
                ok = True
            elif base is list and isinstance(val, list):
                ok = True
            elif base is float and isinstance(val, (int, float)) and not isinstance(val, bool):
                ok = True
            elif base in (int, str, bool) and type(val) is base:
                ok = True
        if not ok:
            raise ValueError(f"config field {key!r} = {val!r} has the wrong type; expected {hint}")


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PasConfig:
    import yaml

    data: dict = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a PAS config must be a mapping of fields to values")
        data.update(loaded)
    data.update(overrides or {})
    names = [f.name for f in dataclasses.fields(PasConfig)]
    check_known_keys(data, names, "PAS config")
    _check_types(data)
    return PasConfig(**data)


def parse_overrides(argv: list[str]) -> dict:
    """``["--seed", "42", "--methods", "PASf,iPASwo"]`` -> typed values by the config's field types."""
    import yaml

    hints = typing.get_type_hints(PasConfig)
    out: dict = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            raise ValueError(f"expected --field value, got {tok!r}")
        key = tok[2:].replace("-", "_")
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv):
                raise ValueError(f"--{key} needs a value")
            raw = argv[i + 1]
            i += 2
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=1)
            raise ValueError(f"unknown option --{key}" + (f" (did you mean --{close[0]}?)" if close else ""))
        hint = str(hints[key])
        if "list" in hint and not raw.startswith("["):
            vals = [yaml.safe_load(x) for x in raw.split(",") if x != ""]
            out[key] = vals if not (hint.startswith("list[int] | str") and raw == "all") else raw
            if "str" in hint and ":" in raw:
                out[key] = raw
        else:
            out[key] = yaml.safe_load(raw)
    return out
