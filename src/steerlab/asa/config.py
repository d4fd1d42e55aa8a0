"""ASA run configuration: defaults that run on the embedded model on 2 CPU cores, every field overridable."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, UserError, check_choice, check_range, opt
from ..models.registry import SITES
from ..tools.formats import TOOL_CALL_FORMATS, TRIGGER_MODES
from ..vectors import ESTIMATORS


@dataclass
class AsaConfig(Config):
    WHAT = "ASA config"
    ALIASES = {"alphas": "strengths", "run_dir": "out"}

    model: str = opt("smollm2-135m", "alias (smollm2-135m), .gguf file, local model dir or hub id")
    device: str = opt("auto", "auto | cpu | cuda | mps")
    dtype: str = opt("auto", "auto | float32 | bfloat16 | float16")
    out: str | None = opt(None, "run directory (default runs/asa-<model>)")
    data: str = opt("builtin", "'builtin' or a JSONL with prompt, domain, label, split")
    limit_per_cell: int | None = opt(None, "reduced run: at most N prompts per split x domain x label")
    tools: str = opt("builtin", "'builtin' (four tools) or a JSON list of tools, each naming its 'domain'")
    call_format: str = opt(
        "tool_call_json", "tool-call syntax taught in the prompt (steerlab.tools registry)"
    )
    few_shot: str = opt("default", "'default' (one call + one plain answer), 'none', or a JSON file of turns")
    use_template_tools: bool = opt(
        False, "pass tools through the chat template (models whose template takes them)"
    )
    site: str = opt("block", "where the probes read and the vector is added (steerlab site)")
    n_top_layers: int = opt(2, "candidate layers: the best N by VALID probe AUC ...")
    extra_layers: list[int] | str = opt("auto", "... plus these ('auto': 50%, 60%, 70% of depth)")
    estimator: str = opt("mean_difference", "direction estimator (steerlab.vectors registry)")
    strengths: list[float] = opt(
        [0.25, 0.5, 1.0], "push sizes to try, in units of the mean hidden-state norm at L"
    )
    taus: list[float] = opt([0.55, 0.6, 0.7, 0.8, 0.9, 0.95], "gate thresholds to try (0.5 < tau < 1)")
    betas: list[float] = opt(
        [0.0, 0.5, 1.0], "weights of the global vector in unit(v_domain + beta v_global)"
    )
    trigger_mode: str = opt("prefix", "'prefix': the reply starts with the marker; 'anywhere': it appears")
    max_new_tokens_decision: int = opt(12, "tokens generated to decide a trigger (tune stage)")
    max_new_tokens_call: int = opt(64, "tokens generated for a whole call (evaluate stage)")
    batch_size: int = opt(64, "generation/capture batch (results do not depend on it)")
    probe_c: float = opt(1.0, "inverse L2 strength of the logistic probes and router")
    seed: int = opt(0, "seed of probes, random-direction control and bootstrap")
    n_boot: int = opt(2000, "bootstrap resamples for intervals")

    def validate(self) -> None:
        check_choice("trigger_mode", self.trigger_mode, TRIGGER_MODES)
        check_choice("call_format", self.call_format, TOOL_CALL_FORMATS)
        check_choice("site", self.site, SITES)
        check_choice("estimator", self.estimator, ESTIMATORS)
        for name in ("taus", "strengths", "betas"):
            if not getattr(self, name):
                raise UserError(f"{name} must not be empty")
        for tau in self.taus:
            check_range("tau", tau, 0.5, 1.0, strict_lo=True, strict_hi=True)
        for s in self.strengths:
            check_range("strength", s, 0.0, strict_lo=True)  # the gate gives the sign
        if self.limit_per_cell is not None:
            check_range("limit_per_cell", self.limit_per_cell, 2)
        for name in (
            "n_top_layers",
            "max_new_tokens_decision",
            "max_new_tokens_call",
            "batch_size",
            "n_boot",
        ):
            check_range(name, getattr(self, name), 1)
        check_range("probe_c", self.probe_c, 0.0, strict_lo=True)
        if isinstance(self.extra_layers, str) and self.extra_layers != "auto":
            raise UserError(
                f"extra_layers must be 'auto' or a list of layer numbers, got {self.extra_layers!r}"
            )

    def run_dir(self) -> str:
        return self.out or f"runs/asa-{self.model.replace('/', '_')}"

    def candidate_extra_layers(self, n_layers: int) -> list[int]:
        if self.extra_layers == "auto":
            return sorted({min(n_layers - 1, round(f * n_layers)) for f in (0.5, 0.6, 0.7)})
        bad = [x for x in self.extra_layers if not 0 <= x < n_layers]
        if bad:
            raise UserError(f"extra_layers {bad} out of range: this model has layers 0..{n_layers - 1}")
        return list(self.extra_layers)
