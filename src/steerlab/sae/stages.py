"""The tool-use transcoder study as resumable stages (``steerlab.stages.Runner``).

data -> finetune (LoRA) -> base (a transcoder per spliced layer, on the base model) -> delta (latents on the
finetuned model, and a control on the base model) -> evaluate (splice conditions by generation + completion CE;
with several spliced layers each layer's delta alone and all together) -> attribute (delta latents at the decision
token: AUC and the smallest specific set; ``sae.attribution``) -> report. ``delta`` depends on ``finetune``: a new
finetune retrains the delta. Transcoders train on pairs streamed from the model (``CapturedPairs``), one capture
for every layer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..eval.stats import bootstrap_mean
from ..stages import Runner, Stage, StageContext
from .attribution import stage_attribute
from .calc_data import make_calc_splits
from .config import ToolUseConfig
from .corpus import calc_conversations, general_prompts
from .run_data import DATA, SUBSETS, eval_rows, finetuned_model, split_rows
from .stream import CapturedPairs

log = logging.getLogger(__name__)


def _source(ctx: StageContext, lm: object) -> CapturedPairs:
    """The transcoders' training pairs at every spliced layer, streamed from ``lm`` (general text + TRAIN
    calculator conversations, prompt and tool-call tokens)."""
    c = ctx.config
    texts = general_prompts(c.n_general, c.seed) + calc_conversations(split_rows(ctx, "train"))
    return CapturedPairs(
        lm, texts, c.spliced(), buffer_tokens=c.buffer_tokens, seed=c.seed, progress=ctx.progress
    )


def _write_jsonl(path: Path, rows: list[dict], outputs: dict[str, list[str]]) -> None:
    with open(path, "w") as f:
        for i, r in enumerate(rows):
            f.write(
                json.dumps(
                    {"prompt": r["prompt"], "subset": r["subset"], **{k: v[i] for k, v in outputs.items()}}
                )
                + "\n"
            )


def _replies(path: Path, rows: list[dict], key: str) -> list[str]:
    """The replies under ``key`` that a stage wrote for exactly these prompts."""
    saved = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if [r["prompt"] for r in saved] != [r["prompt"] for r in rows]:
        raise RuntimeError(f"{path} holds replies to other prompts; rerun its stage")
    return [r[key] for r in saved]


# ---------------------------------------------------------------- stages


def stage_data(ctx: StageContext) -> dict:
    c = ctx.config
    splits = make_calc_splits(n_train=c.n_train, n_eval_per_subset=c.n_eval, seed=c.seed)
    for name, rows in splits.items():
        (ctx.out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {k: len(v) for k, v in splits.items()}


def stage_finetune(ctx: StageContext) -> dict:
    from ..eval.plots import line_sweep
    from ..finetune import lora_finetune, save_model_dir
    from ..models import load_model
    from .finetune import generate_calls, subset_metrics

    c = ctx.config
    ev = eval_rows(ctx)
    lm = load_model(c.model, device=c.device, dtype=c.dtype)  # a private copy: the finetune edits it in place
    gen = dict(max_new_tokens=c.max_new_tokens, batch_size=c.gen_batch, progress=ctx.progress)
    before = generate_calls(lm, ev, desc="base model", **gen)
    train = split_rows(ctx, "train")[: c.lora_examples]
    hist = lora_finetune(
        lm,
        train,
        rank=c.lora_rank,
        lora_alpha=c.lora_alpha,
        targets=c.lora_targets,
        layers=c.lora_layers,
        epochs=1.0,
        batch_size=c.lora_batch,
        lr=c.lora_lr,
        seed=c.seed,
        progress=ctx.progress,
    )
    after = generate_calls(lm, ev, desc="finetuned model", **gen)
    save_model_dir(lm, ctx.out / "model")
    _write_jsonl(ctx.out / "generations.jsonl", ev, {"base model": before, "finetuned": after})
    line_sweep(
        range(1, len(hist["loss"]) + 1),
        {"train loss": hist["loss"]},
        ctx.out / "loss.png",
        title="LoRA finetune loss (completion tokens)",
        xlabel="step",
        ylabel="nats/token",
    )
    return {
        "loss": hist["loss"],
        "steps": hist["steps"],
        "n_examples": len(train),
        "before": subset_metrics(ev, before),
        "after": subset_metrics(ev, after),
    }


def stage_base(ctx: StageContext) -> dict:
    from .scoring import cross_entropy
    from .splice import MultiSplice, TranscoderSplice
    from .train import tail_mean, train_transcoders
    from .transcoder import Transcoder, save_transcoder

    c, lm = ctx.config, ctx.lm
    layers = c.spliced()
    src = _source(ctx, lm)
    tcs = {
        k: Transcoder(lm.hidden_size, c.d_sae, activation=c.activation, k=c.k, seed=c.seed) for k in layers
    }
    hists = train_transcoders(
        tcs,
        src,
        steps=c.steps,
        batch_size=c.batch_size,
        lr=c.lr,
        sparsity_coef=c.sparsity,
        target_l0=c.target_l0,
        seed=c.seed,
        init_l0=c.base_init_l0(),
        progress=ctx.progress,
    )
    # splice cost on held-out text the transcoders never saw: the eval prompts with their target completions
    held = calc_conversations(eval_rows(ctx))
    raw = cross_entropy(lm, held, chat=True)
    per = {}
    for k in layers:
        save_transcoder(
            tcs[k], ctx.out / f"transcoder_{k}", extra={"layer": k, "model": lm.name, "hook": "mlp_in -> mlp"}
        )
        with TranscoderSplice(lm, k, tcs[k]):
            spliced = cross_entropy(lm, held, chat=True)
        per[str(k)] = {
            "train_nmse": tail_mean(hists[k], "nmse"),
            "l0": tail_mean(hists[k], "l0"),
            "threshold_shift": hists[k]["shift"][-1],
            "ce_spliced": float(spliced.mean()),
            "ce_increase": bootstrap_mean((spliced - raw).numpy(), seed=c.seed),
        }
    together = None
    if len(layers) > 1:
        with MultiSplice(lm, {k: (tcs[k], 1.0, None) for k in layers}):
            spliced = cross_entropy(lm, held, chat=True)
        together = {
            "ce_spliced": float(spliced.mean()),
            "ce_increase": bootstrap_mean((spliced - raw).numpy(), seed=c.seed),
        }
    return {
        "layers": per,
        "all_layers_together": together,
        "ce_raw": float(raw.mean()),
        "n_eval_tokens": int(raw.numel()),
        "training_pairs": src.describe(),
    }


def stage_delta(ctx: StageContext) -> dict:
    from .train import PROBE_TOKENS, tail_mean, train_transcoders
    from .transcoder import DeltaTranscoder, load_transcoder, save_transcoder

    c = ctx.config
    layers = c.spliced()
    out: dict = {}
    for which, name in (("finetuned", "delta"), ("base", "control_delta")):
        lm = finetuned_model(ctx) if which == "finetuned" else ctx.lm
        src = _source(ctx, lm)
        ds = {
            k: DeltaTranscoder(
                load_transcoder(ctx.path("base") / f"transcoder_{k}"),
                c.d_new,
                seed=c.seed + 1,
                activation=c.delta_activation,
            )
            for k in layers
        }
        hists = train_transcoders(
            ds,
            src,
            steps=c.delta_steps,
            batch_size=c.batch_size,
            lr=c.lr,
            sparsity_coef=c.delta_sparsity,
            target_l0=c.delta_target_l0,
            seed=c.seed,
            init_l0=c.delta_start_l0(),
            progress=ctx.progress,
        )
        probe = src.sample(PROBE_TOKENS, torch.Generator().manual_seed(c.seed + 2), count=False)
        out[name] = {"trained_on": which, "training_pairs": src.describe(), "layers": {}}
        for k, d in ds.items():
            x, y = probe[k]
            var = y.var(0).sum()
            with torch.no_grad():
                nmse0 = float((d(x, 0.0)[0] - y).pow(2).sum(-1).mean() / var)
            save_transcoder(d, ctx.out / f"{name}_{k}", extra={"layer": k, "trained_on": which})
            out[name]["layers"][str(k)] = {
                "nmse_base_only": nmse0,
                "nmse_with_delta": tail_mean(hists[k], "nmse"),
                "delta_l0": tail_mean(hists[k], "l0"),
                "threshold_shift": hists[k]["shift"][-1],
                "l0_history": hists[k]["l0"][:: max(1, len(hists[k]["l0"]) // 100)],
            }
        del src
    return out


def conditions(scales: list[float], layers: list[int]) -> dict[str, dict]:
    """name -> which transcoder at the spliced layers (none/base/delta/control_delta), the delta scale and the layers
    that get the delta (the others get the base only), all on the finetuned model."""
    conds: dict[str, dict] = {
        "finetuned (no splice)": {"transcoder": "none", "scale": 0.0, "delta_layers": []},
        "base only (scale=0)": {"transcoder": "base", "scale": 0.0, "delta_layers": []},
    }
    for a in scales:
        if a != 0:
            conds[f"base + {a:g}*delta"] = {"transcoder": "delta", "scale": a, "delta_layers": list(layers)}
    if len(layers) > 1:
        for k in layers:
            conds[f"base + 1*delta at layer {k} only"] = {
                "transcoder": "delta",
                "scale": 1.0,
                "delta_layers": [k],
            }
    conds["base + 1*control delta"] = {
        "transcoder": "control_delta",
        "scale": 1.0,
        "delta_layers": list(layers),
    }
    return conds


def _load_all(ctx: StageContext, layers: list[int]) -> dict[tuple[str, int], object]:
    from .transcoder import load_transcoder

    tcs: dict[tuple[str, int], object] = {}
    for k in layers:
        tcs[("base", k)] = load_transcoder(ctx.path("base") / f"transcoder_{k}")
        for kind in ("delta", "control_delta"):
            tcs[(kind, k)] = load_transcoder(ctx.path("delta") / f"{kind}_{k}")
    return tcs


def splice_spec(tcs: dict, cond: dict, layers: list[int]) -> dict | None:
    """``MultiSplice`` spec of a condition (None: no splice)."""
    if cond["transcoder"] == "none":
        return None
    return {
        k: (tcs[(cond["transcoder"], k)], cond["scale"], None)
        if cond["transcoder"] != "base" and k in cond["delta_layers"]
        else (tcs[("base", k)], 1.0, None)
        for k in layers
    }


def restored(value: float, base_only: float, finetuned: float) -> float | None:
    """Share of the finetuned behaviour a condition brings back: 0 at the base-only splice, 1 at the finetuned
    model (None when the two do not differ)."""
    gap = finetuned - base_only
    return (value - base_only) / gap if abs(gap) > 1e-9 else None


def stage_evaluate(ctx: StageContext) -> dict:
    from .finetune import generate_calls, subset_metrics
    from .scoring import completion_ce
    from .splice import MultiSplice

    c = ctx.config
    lm = finetuned_model(ctx)
    ev = eval_rows(ctx)
    layers = c.spliced()
    tcs = _load_all(ctx, layers)
    results, gens = {}, {}
    for name, cond in conditions(c.delta_scales, layers).items():
        spec = splice_spec(tcs, cond, layers)

        def spliced(spec: dict | None = spec) -> MultiSplice | None:
            return MultiSplice(lm, spec) if spec is not None else None

        ce = {}
        for sub in SUBSETS:
            rows = [r for r in ev if r["subset"] == sub]
            rec = spliced()
            if rec is None:
                vals = completion_ce(lm, rows)
            else:
                with rec:
                    vals = completion_ce(lm, rows)
            stats = rec.stats() if rec else {}
            ce[sub] = {
                "ce": bootstrap_mean(vals.numpy(), seed=c.seed),
                **stats.get(c.layer, {}),
                **({"per_layer": {str(k): v for k, v in stats.items()}} if len(stats) > 1 else {}),
            }
        if spec is None:  # the finetuned model unspliced: its greedy replies are the finetune stage's
            texts = _replies(ctx.path("finetune") / "generations.jsonl", ev, "finetuned")
        else:
            texts = generate_calls(
                lm,
                ev,
                max_new_tokens=c.max_new_tokens,
                batch_size=c.gen_batch,
                context=spliced(),
                progress=ctx.progress,
                desc=name,
            )
        gm = subset_metrics(ev, texts)
        results[name] = {**cond, "subsets": {s: {**gm[s], **ce[s]} for s in SUBSETS}}
        gens[name] = texts
    ft, b0 = results["finetuned (no splice)"]["subsets"], results["base only (scale=0)"]["subsets"]
    for r in results.values():
        m = r["subsets"]
        r["restored"] = {
            s: {
                "tool_call_rate": restored(
                    m[s]["tool_call_rate"][0], b0[s]["tool_call_rate"][0], ft[s]["tool_call_rate"][0]
                ),
                "completion_ce": restored(m[s]["ce"][0], b0[s]["ce"][0], ft[s]["ce"][0]),
            }
            for s in ("tool", "ood")
        }
    _write_jsonl(ctx.out / "generations.jsonl", ev, gens)
    return {"layers": layers, "conditions": results, "base_model_no_splice": ctx.result("finetune")["before"]}


def stage_report(ctx: StageContext) -> dict:
    from .report import write_report

    return {"report": str(write_report(ctx))}


STAGES = (
    Stage("data", stage_data, reads=DATA, doc="the calculator data (train + held-out tool, copy, ood)"),
    Stage(
        "finetune",
        stage_finetune,
        reads=(
            *DATA,
            "lora_rank",
            "lora_alpha",
            "lora_targets",
            "lora_layers",
            "lora_examples",
            "lora_lr",
            "lora_batch",
            "max_new_tokens",
        ),
        after=("data",),
        uses_model=True,
        knobs=("gen_batch", "device"),
        doc="LoRA-finetune the model to the calculator format; tool-call rate before and after",
    ),
    Stage(
        "base",
        stage_base,
        reads=(
            *DATA,
            "layer",
            "splice_layers",
            "n_general",
            "d_sae",
            "activation",
            "k",
            "target_l0",
            "init_l0",
            "sparsity",
            "steps",
            "batch_size",
            "lr",
            "buffer_tokens",
        ),
        after=("data",),
        uses_model=True,
        doc="the base transcoder per spliced layer on the base model; its splice CE cost",
    ),
    Stage(
        "delta",
        stage_delta,
        reads=(
            *DATA,
            "layer",
            "splice_layers",
            "n_general",
            "d_new",
            "delta_activation",
            "delta_target_l0",
            "delta_init_l0",
            "delta_sparsity",
            "delta_steps",
            "batch_size",
            "lr",
            "buffer_tokens",
        ),
        after=("data", "base", "finetune"),
        uses_model=True,
        knobs=("device",),
        doc="delta latents per spliced layer on the finetuned model (and the control on the base model)",
    ),
    Stage(
        "evaluate",
        stage_evaluate,
        reads=(*DATA, "layer", "splice_layers", "delta_scales", "max_new_tokens"),
        after=("data", "finetune", "base", "delta"),
        uses_model=True,
        knobs=("gen_batch", "device"),
        doc="splice conditions (finetuned, base only, delta scales, each layer alone, control) by generation "
        "and completion CE",
    ),
    Stage(
        "attribute",
        stage_attribute,
        reads=(
            *DATA,
            "layer",
            "splice_layers",
            "search_pool",
            "search_prompts",
            "keep_margin",
            "ablate_max",
            "max_new_tokens",
        ),
        after=("data", "finetune", "delta"),
        uses_model=True,
        knobs=("gen_batch", "device"),
        doc="delta latents at the decision token: AUC tool vs copy, the smallest specific set (chosen on TRAIN)",
    ),
    Stage(
        "report",
        stage_report,
        reads=(
            "layer",
            "splice_layers",
            "lora_targets",
            "lora_layers",
            "lora_rank",
            "d_new",
            "delta_target_l0",
        ),
        after=("finetune", "base", "delta", "evaluate", "attribute"),
        doc="report.md, tables and plots",
    ),
)


def runner(cfg: ToolUseConfig, progress: bool = True, models: object = None) -> Runner:
    return Runner(STAGES, cfg, cfg.out, progress=progress, models=models)


def preflight(cfg: ToolUseConfig) -> None:
    """Layers in range for the model, checked from its config before anything is loaded."""
    from ..models import check_layers

    check_layers(cfg.model, cfg.layers_used(), "layer/lora_layers")
