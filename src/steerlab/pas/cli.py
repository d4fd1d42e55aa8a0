"""``steerlab pas run -c config.yaml [--seed 42 --max_sample_size 1000 ...]``"""

from __future__ import annotations

import argparse
import json
from importlib import resources


def default_config_path() -> str:
    return str(resources.files("steerlab.pas") / "default_config.yaml")


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config, parse_overrides
    from .run import run_pas

    cfg = load_config(args.config or default_config_path(), parse_overrides(args.overrides))
    out = run_pas(cfg)
    print(f"results under {out['root']}")
    for row in out["summary"]:
        print(json.dumps(row))
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pas", help="PAS: steering sweeps for multiple-choice benchmarks")
    psub = p.add_subparsers(dest="pas_command", metavar="COMMAND", required=True)
    r = psub.add_parser(
        "run",
        help="score, build vectors, sweep on validation, report test with controls",
        epilog="Any config field can follow as --field value, e.g. --seed 7 --methods PASf,iPASwo",
    )
    r.add_argument("-c", "--config", help="YAML config (default: the shipped default_config.yaml)")
    r.set_defaults(func=_cmd_run, accepts_overrides=True)  # any other --field value pair overrides the config
