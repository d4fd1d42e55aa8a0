"""``steerlab sae ...``: calculator data, and the base-splice sanity check (CE cost of replacing an MLP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_data(args: argparse.Namespace) -> int:
    from ..runs import save_json
    from .calc_data import make_calc_splits

    splits = make_calc_splits(n_train=args.n_train, n_eval_per_subset=args.n_eval, seed=args.seed)
    out = Path(args.out)
    for name, rows in splits.items():
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_json(out / "counts.json", {k: len(v) for k, v in splits.items()})
    print({k: len(v) for k, v in splits.items()})
    return 0


def _cmd_splice_cost(args: argparse.Namespace) -> int:
    from ..eval.plots import line_sweep
    from ..eval.stats import bootstrap_mean
    from ..models import load_model
    from ..runs import save_json
    from .corpus import offline_corpus
    from .splice_eval import cross_entropy, mlp_pairs, transcoder_splice, zero_mlp_splice
    from .train import tail_mean, train_transcoder
    from .transcoder import Transcoder, save_transcoder

    lm = load_model(args.model, device=args.device)
    train, held = offline_corpus(args.n_train, args.n_eval, args.seed)
    raw = cross_entropy(lm, held, chat=True)
    out = Path(args.out)
    rows = []
    for layer in [int(x) for x in args.layers.split(",")]:
        x, y = mlp_pairs(lm, train, layer, progress=not args.quiet)
        tc = Transcoder(lm.hidden_size, args.d_sae, activation=args.activation, k=args.k, seed=args.seed)
        hist = train_transcoder(
            tc,
            x,
            y,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            sparsity_coef=args.sparsity,
            seed=args.seed,
            init_l0=args.init_l0,
            progress=not args.quiet,
        )
        with transcoder_splice(lm, layer, tc):
            spliced = cross_entropy(lm, held, chat=True)
        with zero_mlp_splice(lm, layer):
            ablated = cross_entropy(lm, held, chat=True)
        diff = bootstrap_mean((spliced - raw).numpy(), seed=args.seed)
        abl = float((ablated - raw).mean())
        rows.append(
            {
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
        )
        save_transcoder(
            tc,
            out / f"transcoder_L{layer}",
            extra={"layer": layer, "model": lm.name, "hook": "mlp_in -> mlp (steerlab sites)"},
        )
        print(json.dumps(rows[-1]))
    save_json(out / "splice_cost.json", {"rows": rows, "args": vars(args) | {"func": None}})
    line_sweep(
        [r["layer"] for r in rows],
        {
            "CE increase, base splice": [r["ce_increase"][0] for r in rows],
            "CE increase, MLP zeroed": [r["ce_increase_mlp_zeroed"] for r in rows],
        },
        out / "splice_cost.png",
        title="Cost of replacing MLP(layer) by the transcoder",
        xlabel="layer",
        ylabel="Δ CE (nats/token)",
    )
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
    (out / "splice_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


STAGE_HELP = {
    "finetune": "LoRA-finetune the model to the calculator format; tool-call rate before and after",
    "base": "train the base transcoder on the base model; its splice CE cost",
    "delta": "train delta latents on the finetuned model (and the control on the base model)",
    "evaluate": "splice conditions (raw, base only, alpha sweep, control) by generation and completion CE",
    "attribute": "delta latents at the decision token: tool vs copy, ablations",
    "report": "write report.md and plots",
}


def _config_args(p: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    from .config import ToolUseConfig

    p.add_argument("--out", default="runs/sae/tooluse", help="run directory (stages resume from it)")
    p.add_argument("--quick", action="store_true", help="a small instance of the study (CI, smoke tests)")
    p.add_argument("-q", "--quiet", action="store_true")
    for f in fields(ToolUseConfig):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(
            flag,
            dest=f"cfg_{f.name}",
            default=None,
            metavar=f.name.upper(),
            help=f"default: {getattr(ToolUseConfig(), f.name)}",
        )


QUICK = {
    "n_train": 200,
    "n_eval": 24,
    "lora_examples": 160,
    "n_general": 100,
    "d_sae": 512,
    "steps": 100,
    "delta_steps": 100,
    "alphas": [0.0, 1.0],
    "max_new_tokens": 24,
    "top_latents": 2,
}


def _parse_value(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, list) or (default is None and name == "lora_layers"):
            if raw.lower() in ("none", "all"):
                return None
            conv = float if name == "alphas" else int
            return [conv(v) for v in raw.split(",") if v.strip()]
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return raw
    except ValueError:
        raise SystemExit(
            f"error: --{name.replace('_', '-')} got {raw!r}, expected {type(default).__name__}"
        ) from None


def _cmd_stage(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .config import ToolUseConfig
    from .tooluse import STAGES, ToolUseRun

    base = ToolUseConfig()
    d = base.to_dict() | (QUICK if args.quick else {})
    for f in fields(ToolUseConfig):
        raw = getattr(args, f"cfg_{f.name}")
        if raw is not None:
            d[f.name] = _parse_value(f.name, raw, getattr(base, f.name))
    if "cfg_layer" in vars(args) and args.cfg_layer is not None and args.cfg_lora_layers is None:
        d["lora_layers"] = [d["layer"]]  # the finetune follows the splice layer unless told otherwise
    try:
        cfg = ToolUseConfig.from_dict(d)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    run = ToolUseRun(cfg, Path(args.out), progress=not args.quiet)
    last = STAGES.index(args.stage)
    run.run_all(STAGES[: last + 1])
    if args.stage in ("evaluate", "attribute", "report") or args.stage == STAGES[-1]:
        from .report import write_report

        print(write_report(args.out).read_text())
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sae", help="tool-use transcoders: data, finetune, transcoders, splices, attribution")
    ssub = s.add_subparsers(dest="sae_command", metavar="COMMAND", required=True)
    r = ssub.add_parser("run", help="the whole tool-use transcoder study (every stage, resumable)")
    _config_args(r)
    r.set_defaults(func=_cmd_stage, stage="report")
    for stage, text in STAGE_HELP.items():
        sp = ssub.add_parser(stage, help=text + " (runs earlier stages that are not done)")
        _config_args(sp)
        sp.set_defaults(func=_cmd_stage, stage=stage)
    d = ssub.add_parser("data", help="write the calculator tool-call data (train + held-out subsets)")
    d.add_argument("--out", default="runs/sae/data")
    d.add_argument("--n-train", dest="n_train", type=int, default=2000)
    d.add_argument("--n-eval", dest="n_eval", type=int, default=200)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_data)
    c = ssub.add_parser("splice-cost", help="train a base transcoder per layer; CE cost of splicing it in")
    c.add_argument("--model", default="smollm2-135m")
    c.add_argument("--device", default="auto")
    c.add_argument("--layers", default="3,9,15,21,27")
    c.add_argument("--d-sae", dest="d_sae", type=int, default=2304)
    c.add_argument("--activation", default="topk")
    c.add_argument("--k", type=int, default=64)
    c.add_argument("--steps", type=int, default=800)
    c.add_argument("--batch-size", dest="batch_size", type=int, default=512)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--sparsity", type=float, default=3e-4)
    c.add_argument("--init-l0", dest="init_l0", type=float, default=64.0, help="JumpReLU starting L0")
    c.add_argument("--n-train", dest="n_train", type=int, default=600)
    c.add_argument("--n-eval", dest="n_eval", type=int, default=200)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="runs/sae/splice_cost")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=_cmd_splice_cost)
