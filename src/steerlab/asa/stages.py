"""The ASA pipeline as resumable stages (``steerlab.stages.Runner``) under the run directory.

extract -> sweep -> vectors -> fit -> screen (VALID, first tokens) -> tune (offline) -> gate (VALID, the gate kind)
-> actions (VALID, whole calls) -> evaluate (TEST, by generation) -> baselines (TEST, few-shot prompts) -> lora (TEST,
a LoRA finetune) -> asset -> report. Each stage declares the config fields it reads: changing ``taus`` reruns tune and
what follows, never the extraction or the screen.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..base.files import atomic_path
from ..stages import Runner, Stage, StageContext
from .config import AsaConfig
from .evaluation import stage_baselines, stage_evaluate
from .fitting import stage_extract, stage_fit, stage_sweep, stage_vectors
from .gate_stage import chosen_params, chosen_point, stage_gate
from .inputs import DATA, LAYER_CONVENTION, PROMPT, AsaInputs, inputs, preflight
from .lora import stage_lora
from .tuning import direction_of, point_for, stage_actions, stage_screen, stage_tune

__all__ = ["STAGES", "AsaInputs", "preflight", "run_all", "runner"]
GATE = ("probe_c", "seed", "gate_splits")
GATES = ("gates", "gate_data", "gate_fpr", "gate_cs")
CALLS = ("actions", "constrain", "string_pattern", "max_new_tokens_call", "trigger_mode")


def stage_asset(ctx: StageContext) -> dict:
    """The fitted gate and direction at the chosen operating point, with the chosen action: safetensors + JSON."""
    from ..assets import asset_size_bytes, write_asset_files

    c, lm, data = ctx.config, ctx.lm, inputs(ctx)
    best = chosen_point(ctx)
    action = ctx.result("actions")["chosen"]
    params = chosen_params(ctx, best)
    direction = direction_of(best)
    keep = {direction: params.extra[direction]} if direction in params.extra else {}
    params.extra = keep  # the asset carries the direction it uses, not every candidate
    point = point_for(ctx, best, action, c.constrain)
    manifest = {
        "kind": "asa",
        "model": lm.name,
        "model_fingerprint": lm.fingerprint,
        "model_dtype": str(lm.dtype).replace("torch.", ""),
        "hidden_size": lm.hidden_size,
        "n_layers": lm.n_layers,
        **point.to_manifest(),
        "layer_convention": LAYER_CONVENTION,
        "position_policy": "prompt_last",
        "strength_unit": "mean L2 norm of the hidden state at this layer and site on CAL",
        "mean_norm": params.mean_norm,
        "domains": params.domains,
        "tools": data.tools,
        "prompt": data.builder().describe(),
        "tuned_on": "VALID: first-token screen for the operating point, whole calls for the action",
        "gate_fit_sources": ctx.result("gate")["fit_sources"],
    }
    write_asset_files(ctx.out, params.tensors(), manifest)
    return {"path": str(ctx.runner.path("asset")), "bytes": asset_size_bytes(ctx.out), "action": action}


def stage_report(ctx: StageContext) -> dict:
    from .report import write_report

    written = write_report(ctx)  # in the stage's temporary folder, renamed when the stage is done
    return {"report": str(ctx.runner.path("report") / written.name)}


STAGES = (
    Stage(
        "extract",
        stage_extract,
        reads=(*DATA, *PROMPT, "site"),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="last-prompt-token states at every layer",
    ),
    Stage(
        "sweep",
        stage_sweep,
        reads=(*DATA, "probe_c", "n_top_layers", "extra_layers"),
        after=("extract",),
        doc="probe AUC per layer, mean hidden norms, candidate layers",
    ),
    Stage(
        "vectors",
        stage_vectors,
        reads=(*DATA, *PROMPT, "site", "estimator", "seed", "directions"),
        after=("extract", "sweep"),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="directions per candidate layer: mean differences on CAL, and behaviour directions (grad, behav)",
    ),
    Stage(
        "fit",
        stage_fit,
        reads=(*DATA, *GATE),
        after=("extract", "vectors", "sweep"),
        doc="router + per-domain probes (and a cross-fit gate on TRAIN alone)",
    ),
    Stage(
        "screen",
        stage_screen,
        reads=(*DATA, *PROMPT, "site", "directions", "strengths", "betas"),
        after=("fit", "sweep", "extract"),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="VALID: the reply's first token under every push",
    ),
    Stage(
        "tune",
        stage_tune,
        reads=(*DATA, "taus", "max_fpr", "min_domain_f1"),
        after=("screen", "fit", "extract", "sweep"),
        doc="the operating point (layer, direction, strength, tau) and the paper's, from the screen; every tau "
        "offline",
    ),
    Stage(
        "gate",
        stage_gate,
        reads=(*DATA, *PROMPT, *GATES, "site", "probe_c", "seed", "max_fpr"),
        after=("tune", "fit", "extract", "sweep"),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="the gate chosen on VALID: per-domain probes, or a shared / all-layer probe fitted with tools in context",
    ),
    Stage(
        "actions",
        stage_actions,
        reads=(*DATA, *PROMPT, *CALLS, "site", "action_rows"),
        after=("tune", "gate", "fit", "extract", "sweep"),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="VALID: whole calls under each action on gate-open rows; the asset's action",
    ),
    Stage(
        "evaluate",
        stage_evaluate,
        reads=(*DATA, *PROMPT, *CALLS, "site", "rows", "n_boot", "seed"),
        after=("tune", "gate", "actions", "fit", "extract", "sweep"),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="TEST: baseline, ASA, every action, the paper's setting, ablations, intervals",
    ),
    Stage(
        "baselines",
        stage_baselines,
        reads=(*DATA, *PROMPT, "baselines", "max_new_tokens_call", "trigger_mode", "n_boot", "seed"),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="TEST: the few-shot prompts a user would try instead",
    ),
    Stage(
        "lora",
        stage_lora,
        reads=(
            *DATA,
            *PROMPT,
            "constrain",
            "string_pattern",
            "max_new_tokens_call",
            "trigger_mode",
            "lora_rank",
            "lora_epochs",
            "lora_lr",
            "lora_answer_tokens",
            "n_boot",
            "seed",
        ),
        uses_model=True,
        knobs=("batch_size", "batch_tokens"),
        doc="TEST: a LoRA finetune on CAL+TRAIN (rank 16, the paper's baseline), no gate",
    ),
    Stage(
        "asset",
        stage_asset,
        reads=(*DATA, *PROMPT, "site", "constrain", "string_pattern", "trigger_mode"),
        after=("tune", "gate", "actions", "fit", "sweep"),
        uses_model=True,
        doc="the asset: safetensors + JSON manifest",
    ),
    Stage(
        "report",
        stage_report,
        reads=(
            "data",
            "limit_per_cell",
            "data_fraction",
            "conversations",
            "max_fpr",
            "min_domain_f1",
            "preset",
            "n_top_layers",
            "directions",
            "strengths",
            "taus",
            "actions",
            "action_rows",
            "rows",
            "baselines",
            "lora_rank",
        ),
        after=("sweep", "vectors", "tune", "gate", "actions", "evaluate", "baselines", "lora", "asset"),
        doc="report.md with the tables and plots",
    ),
)


def runner(
    cfg: AsaConfig, root: str | Path | None = None, progress: bool = True, models: object = None
) -> Runner:
    return Runner(STAGES, cfg, root or cfg.run_dir(), progress=progress, models=models)


def run_all(r: Runner) -> dict:
    """Every stage, then ``report.md`` copied to the run directory's top."""
    r.run_all()
    with atomic_path(r.root / "report.md") as tmp:
        shutil.copyfile(r.path("report") / "report.md", tmp)
    return {"report": str(r.root / "report.md"), "evaluate": r.result("evaluate"), "asset": r.result("asset")}
