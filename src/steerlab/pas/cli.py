"""``steerlab pas run [-c config.yaml] [--seed 42 --limit 300 --methods PASf,iPASwo ...]``"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources

from ..cli_args import add_common_args, add_config_args, config_from_args


def default_config_path() -> str:
    return str(resources.files("steerlab.pas") / "default_config.yaml")


def _cmd_run(args: argparse.Namespace) -> int:
    from ..executors import SweepError, executor_from_args
    from .config import PasConfig
    from .run import preflight, run_pas

    if args.config is None:
        args.config = default_config_path()
    cfg = config_from_args(PasConfig, args)
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


def add_cli(sub: argparse._SubParsersAction) -> None:
    from ..executors import add_executor_args
    from .config import PasConfig

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
