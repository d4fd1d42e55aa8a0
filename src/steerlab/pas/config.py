"""PAS run configuration (YAML and ``--field value``), validated field by field before any model is loaded.

The PAS paper's own key names keep working (``model_name``, ``steer_target``, ``steer_strengths``, ``layers_to_try``,
``max_sample_size``, ``output_dir``, ``n_*_proportion``), and so do its site names (residual, mlp, self_attn,
post_attention_layernorm).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig, UserError, check_choice, check_layer_numbers, check_range, opt
from ..models.registry import SITES

METHODS = ("PASf", "iPASa", "iPASwo")
SITE_ALIASES = {"residual": "block", "mlp": "mlp", "self_attn": "attn", "post_attention_layernorm": "mlp_in"}


@dataclass
class PasConfig(ModelConfig):
    WHAT = "PAS config"
    ALIASES = {
        "model_name": "model",
        "steer_target": "site",
        "steer_strengths": "strengths",
        "layers_to_try": "layers",
        "max_sample_size": "limit",
        "output_dir": "out",
        "n_train_proportion": "train_fraction",
        "n_val_proportion": "valid_fraction",
        "n_test_proportion": "test_fraction",
    }

    quantization: str | None = opt(None, "null, 4bit or 8bit (bitsandbytes, CUDA only)")
    seed: int = opt(42, "run seed: option shuffles, item sample, splits, random controls")
    seeds: list[int] = opt([], "extra seeds, each a full run; summary_aggregate.csv has their mean and sd")
    limit: int = opt(300, "items per benchmark (a seeded sample)")
    train_fraction: float = opt(0.5, "share of items for the vectors")
    valid_fraction: float = opt(0.2, "share for choosing layer and strength")
    test_fraction: float = opt(0.3, "share for the reported accuracy")
    benchmarks: list[str] = opt(["steerlab_mcq"], "steerlab_mcq (shipped), a .jsonl path, or a hub benchmark")
    layers: list[int] | str = opt("all", "'all', 'start:stop:step', or a list of layers")
    strengths: list[float] = opt(
        [0.05, 0.1, 0.2, 0.4], "units of the mean hidden-state norm at that layer and site"
    )
    methods: list[str] = opt(list(METHODS), "PASf, iPASa, iPASwo")
    site: str = opt("block", "block | mlp | attn | mlp_in (or residual, self_attn, post_attention_layernorm)")
    icl_k: int = opt(0, "in-context exemplars (from wrong train items) for the ICL baseline; 0 = none")
    catastrophic_test: bool = opt(False, "apply each benchmark's vectors to target_benchmark (forgetting)")
    target_benchmark: str | None = opt(None, "the benchmark tested for forgetting")
    out: str = opt("runs/pas", "output directory")
    batch_size: int = opt(16, "scoring batch (results do not depend on it)")
    use_chat_template: bool = opt(False, "wrap each prompt in the model's chat template")
    n_random_controls: int = opt(1, "random directions of the same strength on test")
    n_boot: int = opt(2000, "bootstrap resamples")

    def __post_init__(self) -> None:
        if isinstance(self.site, str):
            self.site = SITE_ALIASES.get(self.site, self.site)
        super().__post_init__()

    def validate(self) -> None:
        props = (self.train_fraction, self.valid_fraction, self.test_fraction)
        if abs(sum(props) - 1) > 1e-6 or min(props) <= 0:
            raise UserError(f"split fractions must be > 0 and sum to 1, got train/valid/test = {props}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise UserError(f"unknown method(s) {bad}; valid: {', '.join(METHODS)}")
        check_choice("site", self.site, [*SITES, *SITE_ALIASES])
        if self.quantization not in (None, "4bit", "8bit"):
            raise UserError(f"quantization must be null, '4bit' or '8bit', got {self.quantization!r}")
        check_range("icl_k", self.icl_k, 0)
        if not self.strengths:
            raise UserError("strengths must be a non-empty list of numbers")
        if self.catastrophic_test and not self.target_benchmark:
            raise UserError("catastrophic_test needs target_benchmark (the benchmark tested for forgetting)")
        check_range("limit", self.limit, 10)
        for name in ("batch_size", "n_boot"):
            check_range(name, getattr(self, name), 1)
        check_range("n_random_controls", self.n_random_controls, 0)
        if not self.benchmarks:
            raise UserError("benchmarks must not be empty")
        if isinstance(self.layers, str) and self.layers != "all":
            self._parse_slice(self.layers)
        elif isinstance(self.layers, list):
            if not self.layers:
                raise UserError("layers must not be empty ('all', 'start:stop:step' or a list of layers)")
            check_layer_numbers("layers", self.layers)

    @staticmethod
    def _parse_slice(spec: str) -> tuple[int, int | None, int]:
        """``start:stop:step`` (start defaults to 0, stop to the last layer + 1, step to 1), from 0, step >= 1."""
        parts = spec.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = (int(x) if x.strip() else None for x in (parts + [""])[:3])
        except ValueError:
            raise UserError(
                f"layers must be 'all', 'start:stop:step' or a list of ints, got {spec!r}"
            ) from None
        check_layer_numbers("layers", [x for x in (start, stop) if x is not None])
        if step is not None and step < 1:
            raise UserError(f"layers {spec!r}: the step must be >= 1, got {step}")
        if start is not None and stop is not None and stop <= start:
            raise UserError(f"layers {spec!r} selects no layer (stop {stop} <= start {start})")
        return start or 0, stop, step or 1

    def layer_list(self, n_layers: int) -> list[int]:
        """The layers to try on a model with ``n_layers`` layers; a layer or a slice end past the model's last
        layer is an error, not silently clipped."""
        spec = self.layers
        if spec == "all":
            return list(range(n_layers))
        if isinstance(spec, str):
            start, stop, step = self._parse_slice(spec)
            if stop is None:
                stop = n_layers
            if start >= n_layers or stop > n_layers:
                raise UserError(
                    f"layers {spec!r} out of range: this model has layers 0..{n_layers - 1} "
                    f"(a slice's stop is at most {n_layers})"
                )
            return list(range(start, stop, step))
        bad = [x for x in spec if not 0 <= x < n_layers]
        if bad:
            raise UserError(f"layers {bad} out of range: this model has layers 0..{n_layers - 1}")
        return list(spec)


def steer_target_to_site(target: str) -> str:
    if target in SITES:
        return target
    if target not in SITE_ALIASES:
        raise UserError(f"unknown site {target!r}; valid: {', '.join([*SITES, *SITE_ALIASES])}")
    return SITE_ALIASES[target]


def load_config(path: str | None = None, overrides: dict | None = None) -> PasConfig:
    """A YAML file (optional) with ``overrides`` on top (typed values or command-line strings)."""
    return PasConfig.from_sources(path, overrides)
