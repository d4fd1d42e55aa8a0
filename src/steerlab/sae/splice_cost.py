"""The base-splice sanity check: per layer, train a transcoder on the MLP's (input, output) pairs and measure what
replacing the MLP by it costs in next-token cross-entropy, beside the cost of zeroing the MLP. One resumable stage
per layer (adding a layer computes only that layer)."""

from __future__ import annotations

from ..eval.stats import bootstrap_mean
from ..runs import load_tensors, save_tensors
from ..stages import Runner, Stage, StageContext
from .config import SpliceCostConfig
from .corpus import offline_corpus

TRAIN = (
    "d_sae",
    "activation",
    "k",
    "steps",
    "batch_size",
    "lr",
    "sparsity",
    "init_l0",
    "n_train",
    "n_eval",
    "seed",
)


def _held(ctx: StageContext) -> list:
    c = ctx.config
    return offline_corpus(c.n_train, c.n_eval, c.seed)[1]


def stage_raw(ctx: StageContext) -> dict:
    """The plain model's per-token cross-entropy on the held-out conversations."""
    from .scoring import cross_entropy

    raw = cross_entropy(ctx.lm, _held(ctx), chat=True)
    save_tensors(ctx.out / "ce.safetensors", {"ce": raw})
    return {"ce_raw": float(raw.mean()), "n_eval_tokens": int(raw.numel())}


def layer_stage(layer: int):  # noqa: ANN201
    def run(ctx: StageContext) -> dict:
        from .scoring import cross_entropy
        from .splice import TranscoderSplice, mlp_pairs, zero_mlp_splice
        from .train import tail_mean, train_transcoder
        from .transcoder import Transcoder, save_transcoder

        c, lm = ctx.config, ctx.lm
        train, held = offline_corpus(c.n_train, c.n_eval, c.seed)
        raw = load_tensors(ctx.path("raw") / "ce.safetensors")["ce"]
        x, y = mlp_pairs(lm, train, layer, progress=ctx.progress)
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
        with TranscoderSplice(lm, layer, tc):
            spliced = cross_entropy(lm, held, chat=True)
        with zero_mlp_splice(lm, layer):
            ablated = cross_entropy(lm, held, chat=True)
        diff = bootstrap_mean((spliced - raw).numpy(), seed=c.seed)
        abl = float((ablated - raw).mean())
        save_transcoder(
            tc, ctx.out / "transcoder", extra={"layer": layer, "model": lm.name, "hook": "mlp_in -> mlp"}
        )
        return {
            "layer": layer,
            "ce_raw": float(raw.mean()),
            "ce_spliced": float(spliced.mean()),
            "ce_increase": diff,
            "ce_increase_mlp_zeroed": abl,
            "fraction_of_mlp_recovered": 1 - diff[0] / abl if abl > 0 else None,
            "train_nmse": tail_mean(hist, "nmse"),
            "l0": tail_mean(hist, "l0"),
            "n_train_tokens": int(x.shape[0]),
            "n_eval_tokens": int(raw.numel()),
        }

    return run


def markdown(rows: list[dict]) -> str:
    lines = [
        "| layer | CE raw | CE spliced | ΔCE [95% CI] | ΔCE MLP zeroed | MLP effect recovered | L0 | train NMSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["ce_increase"]
        rec = f"{r['fraction_of_mlp_recovered']:.1%}" if r["fraction_of_mlp_recovered"] is not None else "–"
        lines.append(
            f"| {r['layer']} | {r['ce_raw']:.3f} | {r['ce_spliced']:.3f} | {d[0]:.3f} [{d[1]:.3f}, {d[2]:.3f}] "
            f"| {r['ce_increase_mlp_zeroed']:.3f} | {rec} | {r['l0']:.1f} | {r['train_nmse']:.3f} |"
        )
    return "\n".join(lines)


def stage_report(ctx: StageContext) -> dict:
    from ..eval.plots import line_sweep

    rows = [ctx.result(f"layer_{k}") for k in ctx.config.layers]
    line_sweep(
        [r["layer"] for r in rows],
        {
            "CE increase, transcoder spliced": [r["ce_increase"][0] for r in rows],
            "CE increase, MLP zeroed": [r["ce_increase_mlp_zeroed"] for r in rows],
        },
        ctx.out / "splice_cost.png",
        title="Cost of replacing MLP(layer) by its transcoder",
        xlabel="layer",
        ylabel="Δ CE (nats/token)",
    )
    (ctx.out / "splice_cost.md").write_text(markdown(rows) + "\n")
    return {"rows": rows}


def runner(cfg: SpliceCostConfig, progress: bool = True, models: object = None) -> Runner:
    layer_names = [f"layer_{k}" for k in cfg.layers]
    stages = [
        Stage("raw", stage_raw, reads=("n_train", "n_eval", "seed"), uses_model=True, doc="plain model CE"),
        *[
            Stage(
                name, layer_stage(k), reads=TRAIN, after=("raw",), uses_model=True, doc=f"transcoder at {k}"
            )
            for name, k in zip(layer_names, cfg.layers)
        ],
        Stage("report", stage_report, reads=("layers",), after=tuple(layer_names), doc="table and plot"),
    ]
    return Runner(stages, cfg, cfg.out, progress=progress, models=models)
