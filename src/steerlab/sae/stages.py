"""The tool-use transcoder study as resumable stages (``steerlab.stages.Runner``).

data -> finetune (LoRA) -> base (transcoder on the base model) -> delta (latents on the finetuned model, and a
control on the base model) -> evaluate (splice conditions by generation + completion CE) -> attribute (delta
latents at the decision token) -> report. ``delta`` depends on ``finetune``: a new finetune retrains the delta.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..eval.stats import bootstrap_mean
from ..stages import Runner, Stage, StageContext
from .calc_data import make_calc_splits
from .config import ToolUseConfig
from .corpus import calc_conversations, general_prompts

log = logging.getLogger(__name__)
SUBSETS = ("tool", "ood", "copy")
DATA = ("seed", "n_train", "n_eval")


def _rows(ctx: StageContext, split: str) -> list[dict]:
    path = ctx.path("data") / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _eval_rows(ctx: StageContext) -> list[dict]:
    return [r for s in SUBSETS for r in _rows(ctx, f"eval_{s}")]


def _finetuned(ctx: StageContext):  # noqa: ANN202
    c = ctx.config
    return ctx.runner.models.get(str(ctx.path("finetune") / "model"), device=c.device, dtype=c.dtype)


def _pairs(ctx: StageContext, lm: object) -> tuple[torch.Tensor, torch.Tensor]:
    from .splice import mlp_pairs

    c = ctx.config
    texts = general_prompts(c.n_general, c.seed) + calc_conversations(_rows(ctx, "train"))
    return mlp_pairs(lm, texts, c.layer, progress=ctx.progress)


def _write_jsonl(path: Path, rows: list[dict], outputs: dict[str, list[str]]) -> None:
    with open(path, "w") as f:
        for i, r in enumerate(rows):
            f.write(
                json.dumps(
                    {"prompt": r["prompt"], "subset": r["subset"], **{k: v[i] for k, v in outputs.items()}}
                )
                + "\n"
            )


# ---------------------------------------------------------------- stages


def stage_data(ctx: StageContext) -> dict:
    c = ctx.config
    splits = make_calc_splits(n_train=c.n_train, n_eval_per_subset=c.n_eval, seed=c.seed)
    for name, rows in splits.items():
        (ctx.out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {k: len(v) for k, v in splits.items()}


def stage_finetune(ctx: StageContext) -> dict:
    from ..eval.plots import line_sweep
    from ..models import load_model
    from .finetune import generate_calls, lora_finetune, save_model_dir, subset_metrics

    c = ctx.config
    ev = _eval_rows(ctx)
    lm = load_model(c.model, device=c.device, dtype=c.dtype)  # a private copy: the finetune edits it in place
    gen = dict(max_new_tokens=c.max_new_tokens, batch_size=c.gen_batch, progress=ctx.progress)
    before = generate_calls(lm, ev, desc="base model", **gen)
    train = _rows(ctx, "train")[: c.lora_examples]
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
    from .splice import TranscoderSplice
    from .train import tail_mean, train_transcoder
    from .transcoder import Transcoder, save_transcoder

    c, lm = ctx.config, ctx.lm
    x, y = _pairs(ctx, lm)
    tc = Transcoder(lm.hidden_size, c.d_sae, activation=c.activation, k=c.k, seed=c.seed)
    hist = train_transcoder(
        tc,
        x,
        y,
        steps=c.steps,
        batch_size=c.batch_size,
        lr=c.lr,
        sparsity_coef=c.sparsity,
        seed=c.seed,
        init_l0=c.init_l0,
        progress=ctx.progress,
    )
    save_transcoder(
        tc, ctx.out / "transcoder", extra={"layer": c.layer, "model": lm.name, "hook": "mlp_in -> mlp"}
    )
    # splice cost on held-out text the transcoder never saw: the eval prompts with their target completions
    held = calc_conversations(_eval_rows(ctx))
    raw = cross_entropy(lm, held, chat=True)
    with TranscoderSplice(lm, c.layer, tc):
        spliced = cross_entropy(lm, held, chat=True)
    return {
        "train_nmse": tail_mean(hist, "nmse"),
        "l0": tail_mean(hist, "l0"),
        "n_train_tokens": int(x.shape[0]),
        "ce_raw": float(raw.mean()),
        "ce_spliced": float(spliced.mean()),
        "ce_increase": bootstrap_mean((spliced - raw).numpy(), seed=c.seed),
        "n_eval_tokens": int(raw.numel()),
    }


def stage_delta(ctx: StageContext) -> dict:
    from .train import tail_mean, train_transcoder
    from .transcoder import DeltaTranscoder, load_transcoder, save_transcoder

    c = ctx.config
    out = {}
    for which, name in (("finetuned", "delta"), ("base", "control_delta")):
        lm = _finetuned(ctx) if which == "finetuned" else ctx.lm
        base_tc = load_transcoder(ctx.path("base") / "transcoder")
        x, y = _pairs(ctx, lm)
        d = DeltaTranscoder(base_tc, c.d_new, seed=c.seed + 1, activation=c.delta_activation)
        hist = train_transcoder(
            d,
            x,
            y,
            steps=c.delta_steps,
            batch_size=c.batch_size,
            lr=c.lr,
            sparsity_coef=c.delta_sparsity,
            seed=c.seed,
            init_l0=c.delta_init_l0,
            progress=ctx.progress,
        )
        with torch.no_grad():
            nmse0 = float((d(x[:20000], 0.0)[0] - y[:20000]).pow(2).sum(-1).mean() / y.var(0).sum())
        save_transcoder(d, ctx.out / name, extra={"layer": c.layer, "trained_on": which})
        out[name] = {
            "trained_on": which,
            "nmse_base_only": nmse0,
            "nmse_with_delta": tail_mean(hist, "nmse"),
            "delta_l0": tail_mean(hist, "l0"),
        }
    return out


def conditions(scales: list[float]) -> dict[str, tuple[str, float]]:
    """name -> (transcoder: none/base/delta/control_delta, delta scale), all on the finetuned model."""
    conds: dict[str, tuple[str, float]] = {
        "finetuned (no splice)": ("none", 0.0),
        "base only (scale=0)": ("base", 0.0),
    }
    for a in scales:
        if a != 0:
            conds[f"base + {a:g}*delta"] = ("delta", a)
    conds["base + 1*control delta"] = ("control_delta", 1.0)
    return conds


def stage_evaluate(ctx: StageContext) -> dict:
    from .finetune import generate_calls, subset_metrics
    from .scoring import completion_ce
    from .splice import TranscoderSplice
    from .transcoder import load_transcoder

    c = ctx.config
    lm = _finetuned(ctx)
    ev = _eval_rows(ctx)
    tcs = {
        n: load_transcoder(ctx.path(s) / t)
        for n, s, t in (
            ("base", "base", "transcoder"),
            ("delta", "delta", "delta"),
            ("control_delta", "delta", "control_delta"),
        )
    }
    results, gens = {}, {}
    for name, (kind, scale) in conditions(c.delta_scales).items():

        def spliced(kind: str = kind, scale: float = scale) -> TranscoderSplice | None:
            return TranscoderSplice(lm, c.layer, tcs[kind], scale) if kind != "none" else None

        ce = {}
        for sub in SUBSETS:
            rows = [r for r in ev if r["subset"] == sub]
            rec = spliced()
            if rec is None:
                vals = completion_ce(lm, rows)
            else:
                with rec:
                    vals = completion_ce(lm, rows)
            ce[sub] = {"ce": bootstrap_mean(vals.numpy(), seed=c.seed), **(rec.stats() if rec else {})}
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
        results[name] = {
            "transcoder": kind,
            "scale": scale,
            "subsets": {s: {**gm[s], **ce[s]} for s in SUBSETS},
        }
        gens[name] = texts
    _write_jsonl(ctx.out / "generations.jsonl", ev, gens)
    return {"conditions": results, "base_model_no_splice": ctx.result("finetune")["before"]}


def stage_attribute(ctx: StageContext) -> dict:
    """Rank delta latents by how much more they fire on tool than on copy prompts at the decision token (on TRAIN
    prompts), then ablate the top ones on the held-out sets."""
    from ..capture import capture
    from ..tools import format_spec
    from .finetune import generate_calls, subset_metrics
    from .scoring import decision_logprob
    from .splice import TranscoderSplice
    from .transcoder import load_transcoder

    c = ctx.config
    lm = _finetuned(ctx)
    d = load_transcoder(ctx.path("delta") / "delta")
    marker = lm.tokenizer(format_spec("calculator").marker, add_special_tokens=False)["input_ids"][0]

    def dec_acts(rows: list[dict]) -> torch.Tensor:
        acts = capture(
            lm,
            [[{"role": "user", "content": r["prompt"]}] for r in rows],
            [c.layer],
            sites=["mlp_in"],
            positions="last",
            chat=True,
            progress=False,
        )
        x = acts[(c.layer, "mlp_in")].float()
        with torch.no_grad():
            return d.delta.encode(x)

    train = _rows(ctx, "train")
    a_tool = dec_acts([r for r in train if r["subset"] == "tool"])
    a_copy = dec_acts([r for r in train if r["subset"] == "copy"])
    score = a_tool.mean(0) - a_copy.mean(0)
    top = [int(i) for i in score.argsort(descending=True)[: c.top_latents]]
    ev = {s: _rows(ctx, f"eval_{s}") for s in SUBSETS}
    held = {s: dec_acts(ev[s]) for s in SUBSETS}
    per_latent = [
        {
            "latent": i,
            "train_tool_minus_copy": float(score[i]),
            **{f"mean_act_{s}": float(held[s][:, i].mean()) for s in SUBSETS},
            **{f"fire_rate_{s}": float((held[s][:, i] > 0).float().mean()) for s in SUBSETS},
        }
        for i in range(d.delta.d_sae)
    ]

    def lp(mask: torch.Tensor | None, sub: str) -> float:
        with TranscoderSplice(lm, c.layer, d, 1.0, delta_mask=mask):
            return float(decision_logprob(lm, ev[sub], marker).mean())

    full = {s: lp(None, s) for s in ("tool", "copy")}
    ablations = []
    for i in top:
        m = torch.ones(d.delta.d_sae)
        m[i] = 0
        ablations.append({"latent": i, **{f"logp_marker_{s}": lp(m, s) for s in ("tool", "copy")}})
    m_top = torch.ones(d.delta.d_sae)
    m_top[top] = 0
    joint = {}
    for name, m in (("top ablated", m_top), ("only top kept", 1 - m_top)):
        rows = ev["tool"] + ev["copy"]
        texts = generate_calls(
            lm,
            rows,
            max_new_tokens=c.max_new_tokens,
            batch_size=c.gen_batch,
            context=TranscoderSplice(lm, c.layer, d, 1.0, delta_mask=m),
            progress=ctx.progress,
            desc=name,
        )
        joint[name] = {
            "logp_marker": {s: lp(m, s) for s in ("tool", "copy")},
            "generation": subset_metrics(rows, texts),
        }
    return {
        "top_latents": top,
        "logp_marker_full_delta": full,
        "single_ablations": ablations,
        "joint": joint,
        "per_latent": per_latent,
        "marker_token_id": marker,
    }


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
            "n_general",
            "d_sae",
            "activation",
            "k",
            "init_l0",
            "sparsity",
            "steps",
            "batch_size",
            "lr",
        ),
        after=("data",),
        uses_model=True,
        doc="the base transcoder on the base model; its splice CE cost",
    ),
    Stage(
        "delta",
        stage_delta,
        reads=(
            *DATA,
            "layer",
            "n_general",
            "d_new",
            "delta_activation",
            "delta_init_l0",
            "delta_sparsity",
            "delta_steps",
            "batch_size",
            "lr",
        ),
        after=("data", "base", "finetune"),
        uses_model=True,
        knobs=("device",),
        doc="delta latents on the finetuned model (and the control on the base model)",
    ),
    Stage(
        "evaluate",
        stage_evaluate,
        reads=(*DATA, "layer", "delta_scales", "max_new_tokens"),
        after=("data", "finetune", "base", "delta"),
        uses_model=True,
        knobs=("gen_batch", "device"),
        doc="splice conditions (finetuned, base only, delta scales, control) by generation and completion CE",
    ),
    Stage(
        "attribute",
        stage_attribute,
        reads=(*DATA, "layer", "top_latents", "max_new_tokens"),
        after=("data", "finetune", "delta"),
        uses_model=True,
        knobs=("gen_batch", "device"),
        doc="delta latents at the decision token: tool vs copy, ablations",
    ),
    Stage(
        "report",
        stage_report,
        reads=("layer", "lora_targets", "lora_layers", "lora_rank"),
        after=("finetune", "base", "evaluate", "attribute"),
        doc="report.md, tables and plots",
    ),
)


def runner(cfg: ToolUseConfig, progress: bool = True, models: object = None) -> Runner:
    return Runner(STAGES, cfg, cfg.out, progress=progress, models=models)


def preflight(cfg: ToolUseConfig) -> None:
    """Layers in range for the model, checked from its config before anything is loaded."""
    from ..models import check_layers

    check_layers(cfg.model, cfg.layers_used(), "layer/lora_layers")
