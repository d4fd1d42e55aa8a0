"""L0 against reconstruction and splice cost: one JumpReLU transcoder per target L0 at one layer, its
L0 held at the target on the training batches (``train.train_transcoder``), then spliced into the model on held-out
text. One resumable stage per target (adding a target computes only that one); the training pairs are captured
once (``pairs`` stage) and shared by every target. The report draws the Pareto front (L0 vs NMSE vs CE cost)."""

from __future__ import annotations

from pathlib import Path

from ..eval.stats import bootstrap_mean
from ..runs import load_tensors, save_tensors
from ..stages import Runner, Stage, StageContext
from .config import SparsitySweepConfig
from .corpus import offline_corpus

DATA = ("n_train", "n_eval", "seed", "layer")
TRAIN = ("d_sae", "steps", "batch_size", "lr", "sparsity")


def _name(target: float) -> str:
    return f"target_{target:g}"


def stage_pairs(ctx: StageContext) -> dict:
    """The training pairs at the layer, and the plain and MLP-zeroed model's CE on the held-out conversations."""
    from .scoring import cross_entropy
    from .splice import mlp_pairs, zero_mlp_splice

    c, lm = ctx.config, ctx.lm
    train, held = offline_corpus(c.n_train, c.n_eval, c.seed)
    x, y = mlp_pairs(lm, train, c.layer, progress=ctx.progress)
    raw = cross_entropy(lm, held, chat=True)
    with zero_mlp_splice(lm, c.layer):
        zeroed = cross_entropy(lm, held, chat=True)
    save_tensors(ctx.out / "pairs.safetensors", {"x": x, "y": y, "ce_raw": raw})
    return {
        "n_train_tokens": int(x.shape[0]),
        "n_eval_tokens": int(raw.numel()),
        "ce_raw": float(raw.mean()),
        "ce_increase_mlp_zeroed": float((zeroed - raw).mean()),
    }


def target_stage(target: float):  # noqa: ANN201
    def run(ctx: StageContext) -> dict:
        from .scoring import cross_entropy
        from .splice import TranscoderSplice
        from .train import tail_mean, train_transcoder
        from .transcoder import Transcoder, save_transcoder

        c, lm = ctx.config, ctx.lm
        t = load_tensors(ctx.path("pairs") / "pairs.safetensors")
        tc = Transcoder(lm.hidden_size, c.d_sae, activation="jumprelu", seed=c.seed)
        hist = train_transcoder(
            tc,
            t["x"],
            t["y"],
            steps=c.steps,
            batch_size=c.batch_size,
            lr=c.lr,
            sparsity_coef=c.sparsity,
            target_l0=target,
            seed=c.seed,
            progress=ctx.progress,
        )
        held = offline_corpus(c.n_train, c.n_eval, c.seed)[1]
        with TranscoderSplice(lm, c.layer, tc) as rec:
            spliced = cross_entropy(lm, held, chat=True)
        save_transcoder(
            tc, ctx.out / "transcoder", extra={"layer": c.layer, "model": lm.name, "target_l0": target}
        )
        zeroed = ctx.result("pairs")["ce_increase_mlp_zeroed"]
        diff = bootstrap_mean((spliced - t["ce_raw"]).numpy(), seed=c.seed)
        return {
            "target_l0": target,
            "l0_train": tail_mean(hist, "l0"),
            "l0_heldout": rec.stats()["base_l0"],
            "train_nmse": tail_mean(hist, "nmse"),
            "threshold_shift": hist["shift"][-1],
            "ce_spliced": float(spliced.mean()),
            "ce_increase": diff,
            "fraction_of_mlp_recovered": 1 - diff[0] / zeroed if zeroed > 0 else None,
            "l0_history": hist["l0"][:: max(1, len(hist["l0"]) // 100)],
        }

    return run


def pareto_plot(
    l0: list[float], series: dict[str, list[float]], path: Path, labels: list[str], title: str, xlabel: str
) -> Path:
    """One panel per series against L0 (log axis), each point labelled with its target."""
    import matplotlib.pyplot as plt

    from ..eval.plots import _save, _wrap

    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.6))
    for ax, (name, ys) in zip(list(axes) if len(series) > 1 else [axes], series.items()):
        ax.plot(l0, ys, marker="o", ms=4, color="#4c78a8")
        for x, y, lab in zip(l0, ys, labels):
            ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle(_wrap(title, fig), fontsize=10)
    return _save(fig, path)


def markdown(rows: list[dict], pairs: dict) -> str:
    lines = [
        f"CE without a splice {pairs['ce_raw']:.3f} nats/token on {pairs['n_eval_tokens']} held-out tokens; zeroing "
        f"the MLP costs {pairs['ce_increase_mlp_zeroed']:.3f}.",
        "",
        "| target L0 | L0 (train) | L0 (held-out) | train NMSE | CE increase [95% CI] | MLP effect recovered | "
        "log-threshold shift |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["ce_increase"]
        rec = f"{r['fraction_of_mlp_recovered']:.1%}" if r["fraction_of_mlp_recovered"] is not None else "–"
        lines.append(
            f"| {r['target_l0']:g} | {r['l0_train']:.1f} | {r['l0_heldout']:.1f} | {r['train_nmse']:.3f} | "
            f"{d[0]:.3f} [{d[1]:.3f}, {d[2]:.3f}] | {rec} | {r['threshold_shift']:+.2f} |"
        )
    return "\n".join(lines)


def stage_report(ctx: StageContext) -> dict:
    c = ctx.config
    rows = sorted((ctx.result(_name(t)) for t in c.targets), key=lambda r: r["target_l0"])
    pairs = ctx.result("pairs")
    pareto_plot(
        [r["l0_heldout"] for r in rows],
        {
            "train NMSE": [r["train_nmse"] for r in rows],
            "splice CE increase (nats/token)": [r["ce_increase"][0] for r in rows],
        },
        ctx.out / "pareto.png",
        labels=[f"{r['target_l0']:g}" for r in rows],
        title=f"JumpReLU transcoders at layer {c.layer}: sparsity vs reconstruction vs splice cost "
        "(labels: target L0)",
        xlabel="L0 on held-out text (active latents per token)",
    )
    (ctx.out / "sparsity_sweep.md").write_text(markdown(rows, pairs) + "\n")
    return {"rows": rows, "pairs": pairs}


def runner(cfg: SparsitySweepConfig, progress: bool = True, models: object = None) -> Runner:
    names = [_name(t) for t in cfg.targets]
    stages = [
        Stage(
            "pairs", stage_pairs, reads=DATA, uses_model=True, doc="training pairs, plain and zeroed-MLP CE"
        ),
        *[
            Stage(
                n, target_stage(t), reads=(*DATA, *TRAIN), after=("pairs",), uses_model=True, doc=f"L0 {t:g}"
            )
            for n, t in zip(names, cfg.targets)
        ],
        Stage(
            "report",
            stage_report,
            reads=("targets", "layer"),
            after=tuple(names),
            doc="table, plot",
        ),
    ]
    return Runner(stages, cfg, cfg.out, progress=progress, models=models)
