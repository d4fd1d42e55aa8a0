"""``steerlab sae ...``: the tool-use transcoder study (whole or stage by stage, ``sae data`` writes its data), the
base-splice sanity check (CE cost of replacing an MLP by a transcoder) and the sparsity sweep (L0 vs NMSE vs CE)."""

from __future__ import annotations

import argparse
import json
import sys

from ..cli_args import add_common_args, add_config_args, add_stage_commands, config_from_args

RUN_HELP = "the whole tool-use transcoder study (every stage, resumable)"
STATUS_HELP = "which stages are done, stale or missing in the run directory"


def _quick_switch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a small instance of the study (CI, smoke tests)")


def _study(args: argparse.Namespace, base: dict | None = None):  # noqa: ANN202
    from .config import QUICK, ToolUseConfig
    from .stages import preflight, runner

    preset = dict(QUICK) if args.quick else {}
    flags = {k[len("cfg__") :] for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
    if "layer" in flags and "lora_layers" not in flags:  # the finetune follows the splice layer unless told
        preset["lora_layers"] = [args.cfg__layer]  # parsed (and a bad value named) with the layer field
    cfg = ToolUseConfig.from_sources(
        args.config, {**preset, **{k: getattr(args, f"cfg__{k}") for k in flags}}, base=base
    )
    if base is None:
        preflight(cfg)
    return runner(cfg, progress=not args.quiet)


def _cmd_stage(args: argparse.Namespace) -> int:
    if args.stage == "status":  # judged against the config the run recorded, flags given here on top
        from ..stages import recorded_fields, status_root

        root = status_root(_study(args, base={}).root, "steerlab sae run")
        for row in _study(args, base=recorded_fields(root)).status():
            secs = f"{row['seconds']:.1f} s" if row["seconds"] is not None else ""
            print(f"{row['stage']:<10} {row['state']:<8} {secs}")
        return 0
    r = _study(args)
    r.run_all(until=args.stage)
    if args.stage == "report":
        print((r.path("report") / "report.md").read_text())
    else:
        print(json.dumps(r.result(args.stage), indent=2, default=str)[:3000])
    print(f"[steerlab] run directory: {r.root}")
    return 0


def _cmd_splice_cost(args: argparse.Namespace) -> int:
    from ..executors import SweepError, executor_from_args
    from ..models import check_layers
    from .config import SpliceCostConfig
    from .splice_cost_sweep import run_splice_cost

    cfg = config_from_args(SpliceCostConfig, args)
    executor = executor_from_args(args)
    check_layers(cfg.model, cfg.layers, "layers")
    try:
        with executor:
            r = run_splice_cost(cfg, executor, progress=not args.quiet)
    except SweepError as err:
        print(f"steerlab: error: {err}", file=sys.stderr)
        return 1
    print((r.path("report") / "splice_cost.md").read_text())
    print(f"[steerlab] per-layer transcoders and results under {r.root}")
    return 0


def _cmd_sparsity_sweep(args: argparse.Namespace) -> int:
    from ..models import check_layers
    from .config import SparsitySweepConfig
    from .sparsity_sweep import runner

    cfg = config_from_args(SparsitySweepConfig, args)
    check_layers(cfg.model, [cfg.layer], "layer")
    r = runner(cfg, progress=not args.quiet)
    r.run("report")
    print((r.path("report") / "sparsity_sweep.md").read_text())
    print(f"[steerlab] per-target transcoders, table and pareto.png under {r.root}")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    from ..executors import add_executor_args
    from .config import SparsitySweepConfig, SpliceCostConfig, ToolUseConfig
    from .stages import STAGES

    s = sub.add_parser("sae", help="tool-use transcoders: data, finetune, transcoders, splices, attribution")
    ssub = s.add_subparsers(dest="sae_command", metavar="COMMAND", required=True)
    add_stage_commands(
        ssub,
        STAGES,
        ToolUseConfig,
        _cmd_stage,
        before=[("run", RUN_HELP, {"stage": "report"})],
        after=[("status", STATUS_HELP, {})],
        options=_quick_switch,
        note=". Earlier stages run first when not done.",
    )
    c = ssub.add_parser(
        "splice-cost",
        help="train a base transcoder per layer; CE cost of splicing it in",
        description="Per layer: a transcoder trained on the MLP's (input, output) pairs replaces the MLP; the "
        "cross-entropy increase is reported beside zeroing the MLP. One resumable stage per layer; --executor ray runs the layers in parallel on a Ray cluster.",
    )
    add_config_args(c, SpliceCostConfig)
    add_executor_args(c)
    add_common_args(c)
    c.set_defaults(func=_cmd_splice_cost)
    w = ssub.add_parser(
        "sparsity-sweep",
        help="one transcoder per target L0 at a layer: L0 vs NMSE vs splice CE cost (Pareto plot)",
        description="Per target L0: a JumpReLU transcoder whose thresholds hold its L0 at the target on the "
        "training batches, then spliced in on held-out text. One resumable stage per target.",
    )
    add_config_args(w, SparsitySweepConfig)
    add_common_args(w)
    w.set_defaults(func=_cmd_sparsity_sweep)
