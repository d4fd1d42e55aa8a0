"""``steerlab asa ...``: every pipeline stage, the whole run, a side-by-side demo and an interactive chat."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

DEMO_PROMPTS = [
    "What is 48,213 divided by 37?",
    "Why do we carry digits when adding numbers?",
    "Translate 'the train leaves at noon' into Spanish.",
    "What is the difference between 'affect' and 'effect'?",
    "What's the weather forecast for Oslo tomorrow?",
    "Why is the sky blue?",
]


def _config(args: argparse.Namespace):  # noqa: ANN202
    from .config import AsaConfig

    data: dict = {}
    if args.config:
        data.update(AsaConfig.load(args.config).to_dict())
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            data[k] = json.loads(v)
        except json.JSONDecodeError:
            data[k] = v
    for flag in ("model", "device", "dtype", "limit_per_cell", "batch_size", "data"):
        val = getattr(args, flag, None)
        if val is not None:
            data[flag] = val
    return AsaConfig.from_dict(data)


def _run(args: argparse.Namespace):  # noqa: ANN202
    from .pipeline import AsaRun

    cfg = _config(args)
    root = Path(args.run_dir or f"runs/asa-{cfg.model.replace('/', '_')}")
    return AsaRun(cfg, root, progress=not args.quiet)


def _cmd_stage(args: argparse.Namespace) -> int:
    from . import pipeline as P

    r = _run(args)
    if args.stage == "run":
        out = P.run_all(r)
        print(Path(out["report"]).read_text())
        return 0
    fn = {
        "extract": P.stage_extract,
        "sweep": P.stage_sweep,
        "vectors": P.stage_vectors,
        "fit": P.stage_fit,
        "tune": P.stage_tune,
        "evaluate": P.stage_evaluate,
        "export": P.stage_export,
    }[args.stage]
    res = fn(r)
    print(json.dumps(res, indent=2, default=str)[:4000] if isinstance(res, dict) else res)
    return 0


def _show(res: object, width: int = 48) -> None:
    sign = {1: "+1 (promote)", -1: "-1 (suppress)", 0: "0 (leave)"}[res.gate]
    print(f"\n> {res.prompt}\n  domain={res.domain}  p(tool)={res.p_tool:.3f}  gate={sign}")
    left = textwrap.wrap(res.baseline.text.strip() or "(empty)", width) or [""]
    right = textwrap.wrap(res.steered.text.strip() or "(empty)", width) or [""]
    print(
        f"  {'baseline' + (' [CALL]' if res.baseline_triggered else ''):<{width}} | "
        f"ASA{' [CALL]' if res.steered_triggered else ''}"
    )
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        print(f"  {a:<{width}} | {b}")


def _steerer(args: argparse.Namespace):  # noqa: ANN202
    from ..assets import load_asset
    from ..models import load_model
    from .runtime import AsaSteerer

    _, manifest = load_asset(args.asset)
    lm = load_model(args.model or manifest["model"], device=args.device, dtype=args.dtype)
    return AsaSteerer(lm, args.asset)


def _cmd_demo(args: argparse.Namespace) -> int:
    st = _steerer(args)
    for res in st.run(args.prompt or DEMO_PROMPTS, max_new_tokens=args.max_new_tokens):
        _show(res)
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    st = _steerer(args)
    print("ASA chat: each message is answered by the plain model and by ASA, side by side. Empty line quits.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        _show(st.run([line], max_new_tokens=args.max_new_tokens)[0])
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    asa = sub.add_parser("asa", help="ASA: probe-gated steering for tool calling")
    asub = asa.add_subparsers(dest="asa_command", metavar="STAGE", required=True)
    for stage, doc in [
        ("run", "the whole pipeline + report (the main job)"),
        ("extract", "last-prompt-token states at every layer"),
        ("sweep", "probe AUC per layer"),
        ("vectors", "tool - non-tool mean differences on CAL"),
        ("fit", "router + per-domain probes on TRAIN"),
        ("tune", "alpha, tau, beta, layer by generated F1 on VALID"),
        ("evaluate", "TEST: baseline, ASA, ablations, intervals"),
        ("export", "the asset: safetensors + JSON manifest"),
    ]:
        p = asub.add_parser(stage, help=doc)
        p.add_argument("--run-dir", help="run directory (default runs/asa-<model>)")
        p.add_argument("--config", help="YAML file of AsaConfig fields")
        p.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="override a config field (JSON value)"
        )
        p.add_argument("--model")
        p.add_argument("--device")
        p.add_argument("--dtype")
        p.add_argument("--data", help="'builtin' or a JSONL with prompt, domain, label, split")
        p.add_argument(
            "--limit-per-cell",
            dest="limit_per_cell",
            type=int,
            help="reduced run: at most N prompts per split x domain x label",
        )
        p.add_argument("--batch-size", dest="batch_size", type=int)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=_cmd_stage, stage=stage)
    for name, fn, doc in [
        ("demo", _cmd_demo, "baseline vs ASA side by side on prompts"),
        ("chat", _cmd_chat, "interactive, baseline vs ASA side by side"),
    ]:
        p = asub.add_parser(name, help=doc)
        p.add_argument("--asset", required=True, help="an exported ASA asset directory")
        p.add_argument("--model", help="default: the model named in the asset's manifest")
        p.add_argument("--device", default="auto")
        p.add_argument("--dtype", default="auto")
        p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=48)
        if name == "demo":
            p.add_argument("--prompt", action="append", help="a prompt (repeatable); default: six examples")
        p.set_defaults(func=fn)
