"""ASA run configuration: defaults that run on the embedded model on 2 CPU cores, every field overridable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config_keys import check_known_keys


@dataclass
class AsaConfig:
    model: str = "smollm2-135m"
    device: str = "auto"
    dtype: str = "auto"
    data: str = "builtin"  # or a JSONL with prompt, domain, label, split
    limit_per_cell: int | None = None  # reduced runs: at most this many prompts per (split, domain, label)
    call_format: str = "tool_call_json"
    few_shot: str = "default"  # "default" (one call + one plain answer), "none", or a JSON file of turns
    use_template_tools: bool = False
    site: str = "block"
    n_top_layers: int = 2  # candidate layers by VALID probe AUC ...
    extra_layers: list[int] | str = "auto"  # ... plus these ("auto": 50%, 60%, 70% of depth)
    alphas: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 1.0]
    )  # units of the mean hidden norm at L
    taus: list[float] = field(default_factory=lambda: [0.55, 0.6, 0.7, 0.8, 0.9, 0.95])
    betas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    trigger_mode: str = "prefix"  # "prefix": the reply starts with the marker; "anywhere": the marker appears
    max_new_tokens_decision: int = 12
    max_new_tokens_call: int = 64
    batch_size: int = 64  # decoding on CPU is memory-bound: wide batches amortise each step
    probe_c: float = 1.0
    seed: int = 0
    n_boot: int = 2000

    def __post_init__(self) -> None:
        if self.trigger_mode not in ("prefix", "anywhere"):
            raise ValueError(f"trigger_mode must be 'prefix' or 'anywhere', got {self.trigger_mode!r}")
        for tau in self.taus:
            if not 0.5 < tau < 1:
                raise ValueError(f"every tau must satisfy 0.5 < tau < 1, got {tau}")
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise ValueError(f"alphas must be positive (the gate gives the sign), got {self.alphas}")
        if self.limit_per_cell is not None and self.limit_per_cell < 2:
            raise ValueError(f"limit_per_cell must be >= 2 or None, got {self.limit_per_cell}")
        if self.n_top_layers < 1:
            raise ValueError(f"n_top_layers must be >= 1, got {self.n_top_layers}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AsaConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        check_known_keys(d, names, "ASA config")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> AsaConfig:
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: an ASA config must be a mapping of keys to values")
        return cls.from_dict(data)

    def candidate_extra_layers(self, n_layers: int) -> list[int]:
        if self.extra_layers == "auto":
            return sorted({min(n_layers - 1, round(f * n_layers)) for f in (0.5, 0.6, 0.7)})
        if isinstance(self.extra_layers, str):
            raise ValueError(f"extra_layers must be 'auto' or a list of ints, got {self.extra_layers!r}")
        bad = [x for x in self.extra_layers if not 0 <= x < n_layers]
        if bad:
            raise ValueError(f"extra_layers {bad} out of range 0..{n_layers - 1}")
        return list(self.extra_layers)

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
