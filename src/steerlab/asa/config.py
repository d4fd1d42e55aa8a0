"""ASA run configuration: defaults that run on the embedded model on 2 CPU cores, every field overridable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import ModelConfig, UserError, check_choice, check_layer_numbers, check_range, opt
from ..models.registry import SITES
from ..tools.formats import TOOL_CALL_FORMATS, TRIGGER_MODES, schema_constrained_formats
from ..vectors import ESTIMATORS
from .apply import ACTIONS, CONSTRAIN
from .contexts import GATE_DATA
from .directions import KINDS
from .gates import GATES
from .prompt import FEW_SHOT_SETS

PRESETS = ("default", "full")
DEFAULT_FRACTION = (
    0.25  # the default job's share of the shipped dataset: TEST 200 of 800, sized for ten minutes
)
ROWS = ("main", "all")
# The whole search (``steerlab asa run --full``): every value here replaces the default of a field the user left at
# its default. The default job is the same pipeline on fewer candidates (see the README's main-job section).
FULL = {
    "n_top_layers": 3,
    "directions": ["grad", "global", "asa"],
    "strengths": [0.25, 0.5, 1.0, 2.0, 4.0],
    "actions": list(ACTIONS),
    "action_rows": 64,
    "rows": "all",
    "baselines": ["none", "four", "per_tool"],
    "lora_rank": 16,
    "data_fraction": 1.0,
}


@dataclass
class AsaConfig(ModelConfig):
    WHAT = "ASA config"
    ALIASES = {"alphas": "strengths", "run_dir": "out"}

    preset: str = opt(
        "default",
        "'default': the main job, sized for a sitting (fewer candidates, the rows a reader needs); 'full' (--full): "
        "the whole search, every gated action as a row, every few-shot baseline and LoRA; fields you set win",
    )
    out: str | None = opt(None, "run directory; default runs/asa-<model>")
    data: str = opt("builtin", "'builtin' or a JSONL with prompt, domain, label, split")
    limit_per_cell: int | None = opt(
        None, "reduced run: at most N prompts per split x domain x label (and N conversations)"
    )
    data_fraction: float | str = opt(
        "auto",
        "share of every split x domain x label x kind cell the run uses: 'auto' is a quarter of the shipped dataset "
        "in the default job (TEST 200 of 800) and all of it with --full, your own --data or --limit-per-cell; or a "
        "number in (0, 1]",
    )
    conversations: bool = opt(
        True, "include the conversations that end in a tool result (false: single prompts only)"
    )
    tools: str = opt("builtin", "'builtin' (four tools) or a JSON list of tools, each naming its 'domain'")
    call_format: str = opt(
        "tool_call_json", "tool-call syntax taught in the prompt (steerlab.tools registry)"
    )
    few_shot: str = opt(
        "default", "few-shot turns: " + ", ".join(FEW_SHOT_SETS) + ", or a JSON file of turns"
    )
    use_template_tools: bool = opt(
        False, "pass tools through the chat template (models whose template takes them)"
    )
    site: str = opt("block", "where the probes read and the vector is added (steerlab site)")
    n_top_layers: int = opt(3, "candidate layers: the best N by VALID probe AUC ...")
    extra_layers: list[int] | str = opt([], "... plus these ('auto': 50%, 60%, 70% of depth)")
    estimator: str = opt(
        "mean_difference", "estimator of the global and domain directions (steerlab.vectors)"
    )
    directions: list[str] = opt(
        ["grad", "asa"], "direction kinds screened: " + ", ".join(KINDS) + " (--full: grad, global, asa)"
    )
    strengths: list[float] = opt(
        [0.25, 1.0, 4.0],
        "push sizes, in units of the mean hidden-state norm (wide: find the edge; --full: 0.25, 0.5, 1, 2, 4)",
    )
    taus: list[float] = opt([0.55, 0.7, 0.8, 0.9, 0.95], "gate thresholds to try (0.5 < tau < 1)")
    betas: list[float] = opt(
        [0.5], "weights of the global vector in the paper's unit(v_domain + beta v_global)"
    )
    gate_splits: list[str] = opt(["cal", "train"], "splits the router and probes are fitted on")
    gates: list[str] = opt(
        ["domain", "shared", "all_layers"],
        "gates chosen among on VALID: domain (router + per-domain probes), shared (one probe at the layer), "
        "all_layers (one probe on layers 0..layer)",
    )
    gate_data: list[str] = opt(
        ["varied"],
        "gate data with the tool list in context: varied (the run's prompts with varied tool subsets), bfcl "
        "(BFCL fit-only categories, own vs unrelated functions; needs bfcl-eval)",
    )
    gate_fpr: float = opt(0.05, "false-call rate the probe gates' thresholds are calibrated to (out-of-fold)")
    gate_cs: list[float] = opt([0.001, 0.01, 0.1], "inverse L2 strengths tried for the probe gates")
    max_fpr: float = opt(0.05, "selection: the largest VALID false-positive rate (and cross-fit FPR) allowed")
    min_domain_f1: float = opt(0.4, "selection: every domain's VALID F1 must reach this")
    actions: list[str] = opt(list(ACTIONS), "gated actions tried on VALID (the asset's is chosen there)")
    constrain: str = opt(
        "router", "schema-constrained call after the marker: none, router (its tool) or model"
    )
    string_pattern: str = opt(
        "^[^<}]{1,100}$", "regex every string argument of a constrained call must match"
    )
    action_rows: int = opt(32, "VALID rows (gate open) decoded to choose the action (--full: 64)")
    rows: str = opt(
        "main",
        "TEST rows: 'main' (baseline, asa, the asset's action with its call decoded, the paper's setting, the "
        "ablations) or 'all' (every gated action as a row; --full)",
    )
    baselines: list[str] = opt(
        ["per_tool"],
        "few-shot variants run as TEST baselines (per_tool: an example call for every tool, the richest prompt; "
        "--full: none, four, per_tool)",
    )
    lora_rank: int = opt(
        0, "LoRA baseline (CAL+TRAIN, every projection): rank; 0 skips the baseline (--full: 16, the paper's)"
    )
    lora_epochs: float = opt(1.0, "LoRA baseline: passes over the CAL+TRAIN prompts")
    lora_lr: float = opt(5e-4, "LoRA baseline: learning rate")
    lora_answer_tokens: int = opt(
        24, "LoRA baseline: length of the model's own replies used as non-tool targets"
    )
    trigger_mode: str = opt("prefix", "'prefix': the reply starts with the marker; 'anywhere': it appears")
    max_new_tokens_call: int = opt(96, "tokens generated for a whole call (evaluate stage)")
    batch_size: int = opt(
        32, "generation/capture batch, at most (results do not depend on it; peak memory grows with it)"
    )
    batch_tokens: int = opt(
        3072,
        "... and at most this many padded tokens per batch (rows x (longest prompt after the shared prefix + new "
        "tokens)): long conversations go in smaller batches, short prompts fill batch_size (3072 keeps every stage "
        "of the main job under 2 GB: docs/limits.md)",
    )
    probe_c: float = opt(1.0, "inverse L2 strength of the logistic probes and router")
    seed: int = opt(0, "seed of probes, random-direction control and bootstrap")
    n_boot: int = opt(2000, "bootstrap resamples for intervals")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("preset", self.preset, PRESETS)
        if self.preset == "full":
            defaults = {f.name: f for f in dataclasses.fields(self)}
            for name, value in FULL.items():
                f = defaults[name]
                default = f.default_factory() if f.default is dataclasses.MISSING else f.default
                if getattr(self, name) == default:  # left at the default job's value: the full search's
                    setattr(self, name, type(value)(value) if isinstance(value, list) else value)
            self.validate()
        # 'auto' becomes the number it means, so the stages' keys hold the data a run reads (the default job and
        # --full on a --limit-per-cell run share their stages), and a saved config says it
        self.data_fraction = self.fraction()

    def validate(self) -> None:
        check_choice("trigger_mode", self.trigger_mode, TRIGGER_MODES)
        check_choice("rows", self.rows, ROWS)
        check_choice("call_format", self.call_format, TOOL_CALL_FORMATS)
        check_choice("site", self.site, SITES)
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_choice("constrain", self.constrain, CONSTRAIN)
        for name, allowed in (
            ("directions", KINDS),
            ("actions", ACTIONS),
            ("gate_splits", ("cal", "train")),
            ("baselines", FEW_SHOT_SETS),
            ("gates", GATES),
            ("gate_data", GATE_DATA),
        ):
            values = getattr(self, name)
            for v in values:
                check_choice(name, v, allowed)
        for name in ("taus", "strengths", "betas", "directions", "gate_splits", "gates", "gate_cs"):
            if not getattr(self, name):
                raise UserError(f"{name} must not be empty")
        for tau in self.taus:
            check_range("tau", tau, 0.5, 1.0, strict_lo=True, strict_hi=True)
        for s in self.strengths:
            check_range("strength", s, 0.0, strict_lo=True)  # the gate gives the sign
        if isinstance(self.data_fraction, str) and self.data_fraction != "auto":
            raise UserError(f"data_fraction must be 'auto' or a number in (0, 1], got {self.data_fraction!r}")
        if self.data_fraction != "auto":
            check_range("data_fraction", self.data_fraction, 0.0, 1.0, strict_lo=True)
        if self.limit_per_cell is not None:
            check_range("limit_per_cell", self.limit_per_cell, 2)
        for name in (
            "n_top_layers",
            "max_new_tokens_call",
            "batch_size",
            "batch_tokens",
            "n_boot",
            "action_rows",
        ):
            check_range(name, getattr(self, name), 1)
        check_range("probe_c", self.probe_c, 0.0, strict_lo=True)
        for gc in self.gate_cs:
            check_range("gate_cs", gc, 0.0, strict_lo=True)
        check_range("gate_fpr", self.gate_fpr, 0.0, 1.0)
        check_range("lora_rank", self.lora_rank, 0)
        check_range("lora_epochs", self.lora_epochs, 0.0, strict_lo=True)
        check_range("lora_lr", self.lora_lr, 0.0, strict_lo=True)
        check_range("lora_answer_tokens", self.lora_answer_tokens, 1)
        check_range("max_fpr", self.max_fpr, 0.0, 1.0)
        check_range("min_domain_f1", self.min_domain_f1, 0.0, 1.0)
        if isinstance(self.extra_layers, str) and self.extra_layers != "auto":
            raise UserError(
                f"extra_layers must be 'auto' or a list of layer numbers, got {self.extra_layers!r}"
            )
        if isinstance(self.extra_layers, list):
            check_layer_numbers("extra_layers", self.extra_layers)
        if self.constrain != "none" and self.call_format not in schema_constrained_formats():
            raise UserError(
                f"constrain={self.constrain!r} needs a call_format with a JSON body "
                f"({', '.join(schema_constrained_formats())}); "
                f"got {self.call_format!r} (use --constrain none)"
            )

    def fraction(self) -> float:
        """The data fraction this run uses ('auto': DEFAULT_FRACTION of the shipped dataset in the default job; all of
        it with --full, your own data, or a --limit-per-cell that sizes the run already)."""
        if self.data_fraction != "auto":
            return float(self.data_fraction)
        default_job = self.data == "builtin" and self.preset == "default" and self.limit_per_cell is None
        return DEFAULT_FRACTION if default_job else 1.0

    def run_dir(self) -> str:
        suffix = "-full" if self.preset == "full" else ""
        return self.out or f"runs/asa-{self.model.replace('/', '_')}{suffix}"

    def candidate_extra_layers(self, n_layers: int) -> list[int]:
        if self.extra_layers == "auto":
            return sorted({min(n_layers - 1, round(f * n_layers)) for f in (0.5, 0.6, 0.7)})
        bad = [x for x in self.extra_layers if not 0 <= x < n_layers]
        if bad:
            raise UserError(f"extra_layers {bad} out of range: this model has layers 0..{n_layers - 1}")
        return list(self.extra_layers)


@dataclass
class AsaChatConfig(ModelConfig):
    """``steerlab asa chat``: an asset, the model it steers (by default the one its manifest names)."""

    WHAT = "ASA chat config"

    model: str | None = opt(None, "default: the model named in the asset's manifest")
    asset: str | None = opt(
        None, "an ASA asset directory (e.g. runs/asa-smollm2-135m/asset); required, no default"
    )
    max_new_tokens: int = opt(48, "tokens per reply")

    def validate(self) -> None:
        if self.asset is None:
            raise UserError("--asset is required: an ASA asset directory (e.g. runs/asa-smollm2-135m/asset)")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class AsaDemoConfig(AsaChatConfig):
    """``steerlab asa demo``: the chat's fields plus the prompts shown."""

    WHAT = "ASA demo config"

    prompt: list[str] = opt([], "a prompt (repeatable); default: six examples", repeat=True)
