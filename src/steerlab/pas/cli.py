"""``steerlab pas run [-c config.yaml] [--seed 42 --limit 300 --methods PASf,iPASwo ...]``, and ``steerlab pas
<stage>`` for each stage of the (benchmark, seed) jobs."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources

from ..cli_args import add_common_args, add_config_args, add_stage_commands, config_from_args


def default_config_path() -> str:
    return str(resources.files("steerlab.pas") / "default_config.yaml")


def _config(args: argparse.Namespace):  # noqa: ANN202
    """The config of a ``pas`` command: the shipped default config unless ``-c`` names one, flags on top."""
    from .config import PasConfig

    if args.config is None:
        args.config = default_config_path()
    return config_from_args(PasConfig, args)


def _cmd_run(args: argparse.Namespace) -> int:
    from ..executors import SweepError, executor_from_args
    from .run import preflight, run_pas

    cfg = _config(args)
    executor = executor_from_args(args)
    preflight(cfg)
    try:
        with executor:
            out = run_pas(cfg, progress=not args.quiet, executor=executor)
    except SweepError as err:
        print(f"steerlab: error: {err}", file=sys.stderr)
        return 1
    for row in out["summary"]:
        print(json.dumps(row))
    print(f"[steerlab] results under {out['root']} (summary_seeds.csv, summary_aggregate.csv, seed_*/)")
    return 0


def _cmd_stage(args: argparse.Namespace) -> int:
    """Every (benchmark, seed) job brought to one stage; ``pas run`` adds the tables over benchmarks and seeds."""
    from ..executors import SweepError, executor_from_args
    from .run import preflight, run_pas_stage

    cfg = _config(args)
    executor = executor_from_args(args)
    preflight(cfg)
    try:
        with executor:
            out = run_pas_stage(cfg, args.stage, progress=not args.quiet, executor=executor)
    except SweepError as err:
        print(f"steerlab: error: {err}", file=sys.stderr)
        return 1
    for name, path in out["jobs"].items():
        print(f"[steerlab] {name}: stage {args.stage!r} in {path}")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    from ..executors import add_executor_args
    from .config import PasConfig
    from .stages import STAGES

    p = sub.add_parser("pas", help="PAS: steering sweeps for multiple-choice benchmarks")
    psub = p.add_subparsers(dest="pas_command", metavar="COMMAND", required=True)
    r = psub.add_parser(
        "run",
        help="score, build vectors, sweep on validation, report test with controls",
        description="PAS on multiple-choice benchmarks: vectors from right vs wrong answers, a layer x strength "
        "sweep on VALID, TEST with strength-0, -v and random controls and the majority-letter baseline. Without "
        "-c, the shipped default config runs offline on the embedded model. Each (benchmark, seed) job resumes "
        "from its run directory; --executor ray runs the jobs in parallel on a Ray cluster (docs/ray.md).",
    )
    add_config_args(r, PasConfig)
    add_executor_args(r)
    add_common_args(r)
    r.set_defaults(func=_cmd_run)
    add_stage_commands(
        psub,
        STAGES,
        PasConfig,
        _cmd_stage,
        options=add_executor_args,
        note=". Every (benchmark, seed) job is brought to this stage (earlier stages first when not done); "
        "`steerlab pas run` adds the tables over benchmarks and seeds.",
    )
