"""``steerlab asa ...`` (every pipeline stage, the whole run, status, a side-by-side demo and a chat) and
``steerlab bfcl eval``."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import TYPE_CHECKING

from ..cli_args import add_common_args, add_config_args, add_stage_commands, config_from_args

if TYPE_CHECKING:
    from .config import AsaChatConfig

DEMO_PROMPTS = [
    "What is 48,213 divided by 37?",
    "Why do we carry digits when adding numbers?",
    "Translate 'the train leaves at noon' into Spanish.",
    "What is the difference between 'affect' and 'effect'?",
    "What's the weather forecast for Oslo tomorrow?",
    "Why is the sky blue?",
]


def _runner(args: argparse.Namespace):  # noqa: ANN202
    from .config import AsaConfig
    from .stages import preflight, runner

    cfg = config_from_args(AsaConfig, args)
    preflight(cfg)  # data, tools and prompt checked before any model is loaded
    return runner(cfg, progress=not args.quiet)


def _cmd_stage(args: argparse.Namespace) -> int:
    from .stages import run_all

    r = _runner(args)
    if args.stage == "run":
        if r.config.preset == "full":
            _say_the_time(r)
        out = run_all(r)
        print(open(out["report"]).read())
        print(f"[steerlab] run directory: {r.root} (report.md, asset/, stage folders)")
        return 0
    res = r.run(args.stage)
    print(json.dumps(res, indent=2, default=str)[:4000])
    print(f"[steerlab] stage {args.stage!r} in {r.path(args.stage)}")
    return 0


def _say_the_time(r: object) -> None:
    """Before the whole search starts: what is left of it and how long it will take here (a rough estimate)."""
    import sys

    from .budget import describe, estimate

    todo = [name for name in r.stages if not r.is_done(name)]
    rows = estimate(r.config, r.model(), todo)
    if rows:
        print(describe(rows), file=sys.stderr, flush=True)


def _cmd_status(args: argparse.Namespace) -> int:
    """The run's stages judged against the config the run recorded (flags given here on top), without loading
    its data or model."""
    from ..stages import recorded_fields, status_root
    from .config import AsaConfig
    from .stages import runner

    root = status_root(config_from_args(AsaConfig, args).run_dir(), "steerlab asa run")
    r = runner(config_from_args(AsaConfig, args, base=recorded_fields(root)), root, progress=False)
    for row in r.status():
        secs = f"{row['seconds']:.1f} s" if row["seconds"] is not None else ""
        cpu = f"cpu {row['cpu_seconds']:.1f} s" if row.get("cpu_seconds") is not None else ""
        mem = f"peak {row['peak_rss_mb']:.0f} MB" if row.get("peak_rss_mb") is not None else ""
        print(f"{row['stage']:<10} {row['state']:<8} {secs:<10} {cpu:<14} {mem}")
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


def _steerer(cfg: AsaChatConfig):  # noqa: ANN202
    from ..assets import load_asset
    from ..models import load_model
    from .runtime import AsaSteerer

    _, manifest = load_asset(cfg.asset)
    lm = load_model(cfg.model or manifest["model"], device=cfg.device, dtype=cfg.dtype)
    return AsaSteerer(lm, cfg.asset)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .config import AsaDemoConfig

    cfg = config_from_args(AsaDemoConfig, args)
    st = _steerer(cfg)
    for res in st.run(cfg.prompt or DEMO_PROMPTS, max_new_tokens=cfg.max_new_tokens):
        _show(res)
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from .config import AsaChatConfig

    cfg = config_from_args(AsaChatConfig, args)
    st = _steerer(cfg)
    print("ASA chat: each message is answered by the plain model and by ASA, side by side. Empty line quits.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        _show(st.run([line], max_new_tokens=cfg.max_new_tokens)[0])
    return 0


def _cmd_lodo(args: argparse.Namespace) -> int:
    from .lodo import lodo_markdown, run_lodo

    r = _runner(args)
    res = run_lodo(r, args.report or r.root / "lodo", progress=not args.quiet)
    print(lodo_markdown(res))
    print(f"[steerlab] wrote lodo.json, lodo.md and plots under {args.report or r.root / 'lodo'}")
    return 0


def _cmd_curve(args: argparse.Namespace) -> int:
    from .config import AsaConfig
    from .curve import curve_markdown, run_curve
    from .stages import preflight

    cfg = config_from_args(AsaConfig, args)
    preflight(cfg)
    try:
        sizes = [int(x) for x in str(args.sizes).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
    runs = cfg.run_dir() + "-curve"
    out = args.report or runs
    res = run_curve(cfg, sizes, out, runs=runs, progress=not args.quiet)
    print(curve_markdown(res))
    print(f"[steerlab] wrote curve.json, curve.md and curve.png under {out}")
    return 0


def _cmd_bfcl(args: argparse.Namespace) -> int:
    from ..models import load_model
    from .bfcl import BfclConfig, bfcl_markdown, evaluate_bfcl, write_bfcl

    cfg = config_from_args(BfclConfig, args)
    lm = load_model(cfg.model_spec(), device=cfg.device, dtype=cfg.dtype)
    res = evaluate_bfcl(lm, cfg, progress=not args.quiet)
    paths = write_bfcl(res, cfg.out)
    print(bfcl_markdown(res))
    print(f"[steerlab] wrote {paths['json']}, {paths['md']} and every output in {paths['items']}")
    return 0


RUN_HELP = "the whole pipeline + report (the main job)"
STATUS_HELP = "which stages are done, stale or missing in the run directory"


def _full_switch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--full",
        dest="cfg__preset",
        action="store_const",
        const="full",
        help="the whole search, every gated action as a row, every few-shot baseline and LoRA "
        "(= --preset full; run directory runs/asa-<model>-full); its time is estimated before it starts",
    )


def add_cli(sub: argparse._SubParsersAction) -> None:
    from .bfcl import BfclConfig
    from .config import AsaChatConfig, AsaConfig, AsaDemoConfig
    from .stages import STAGES

    asa = sub.add_parser(
        "asa",
        help="ASA: probe-gated steering for tool calling",
        description="ASA: a router and per-domain probes gate a steering vector at the last prompt token. Stages "
        "resume from the run directory (--out); a stage reruns only when a field it reads changed.",
    )
    asub = asa.add_subparsers(dest="asa_command", metavar="STAGE", required=True)
    add_stage_commands(
        asub,
        STAGES,
        AsaConfig,
        _cmd_stage,
        before=[("run", RUN_HELP, {})],
        after=[("status", STATUS_HELP, {"func": _cmd_status})],
        aliases={"asset": ["export"]},
        options=_full_switch,
    )
    for name, fn, cls, doc in [
        ("demo", _cmd_demo, AsaDemoConfig, "baseline vs ASA side by side on prompts"),
        ("chat", _cmd_chat, AsaChatConfig, "interactive, baseline vs ASA side by side"),
    ]:
        p = asub.add_parser(name, help=doc, description=doc)
        add_config_args(p, cls)
        p.set_defaults(func=fn)
    p = asub.add_parser(
        "lodo",
        help="leave one domain out: the gate refitted on the other domains, tested on the held-out one",
        description="Per domain of the run's data: every gate candidate refitted without that domain, chosen on the "
        "other domains' VALID, and the held-out domain's TEST prompts generated under the run's operating point. "
        "Runs the stages it needs first. Writes lodo.json, lodo.md and plots under --report.",
    )
    add_config_args(p, AsaConfig)
    add_common_args(p)
    p.add_argument("--report", help="output folder (default: <run directory>/lodo)")
    p.set_defaults(func=_cmd_lodo)
    p = asub.add_parser(
        "curve",
        help="learning curve on your own data: TEST F1 and false calls vs labelled prompts per tool",
        description="For each size N, the pipeline fitted on the first N prompts per (tool, label) of CAL, TRAIN and "
        "VALID (TEST whole), up to evaluate and the asset, in <run directory>-curve/nN. Writes curve.json, curve.md "
        "and curve.png under --report.",
    )
    add_config_args(p, AsaConfig)
    add_common_args(p)
    p.add_argument("--sizes", default="4,8,12,24", help="prompts per tool, label and split (comma-separated)")
    p.add_argument("--report", help="output folder (default: <run directory>-curve)")
    p.set_defaults(func=_cmd_curve)
    b = sub.add_parser("bfcl", help="Berkeley Function Calling Leaderboard (offline, from bfcl-eval's data)")
    bsub = b.add_subparsers(dest="bfcl_command", metavar="COMMAND", required=True)
    e = bsub.add_parser(
        "eval",
        help="relevance detection + AST accuracy, baseline vs an ASA asset",
        description="Relevance detection and AST accuracy on BFCL v4 items, for the plain model and (with "
        "--asset) an ASA asset; writes bfcl.json, bfcl.md and items.jsonl (every output) under --out.",
    )
    add_config_args(e, BfclConfig)
    add_common_args(e)
    e.set_defaults(func=_cmd_bfcl)
