"""The one ``steerlab`` command. Each method registers its own subcommands through ``add_cli(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from . import __version__

# module -> its top-level command; each module defines add_cli(subparsers)
_COMMAND_MODULES = (
    "steerlab.asa.cli",
    "steerlab.pas.cli",
    "steerlab.sae.cli",
    "steerlab.tools.cli",
    "steerlab.serve.cli",
    "steerlab.ui.cli",
)


def _cmd_info(args: argparse.Namespace) -> int:
    from .models import SITE_DOC, load_model

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    info = {
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "device": str(lm.device),
        "dtype": str(lm.dtype),
        **lm.arch.describe(),
        "sites": SITE_DOC,
        "source": lm.source,
    }
    print(json.dumps(info, indent=2))
    return 0


def add_model_args(p: argparse.ArgumentParser, default: str = "smollm2-135m") -> None:
    """The model options every command shares."""
    p.add_argument("--model", default=default, help="alias (smollm2-135m), .gguf file, local dir or hub id")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"steerlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="load a model and print its architecture, layers and sites")
    add_model_args(info)
    info.set_defaults(func=_cmd_info)
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as err:
            if err.name and mod_name.startswith(err.name):
                continue  # that method is not part of this build
            raise
        mod.add_cli(sub)
    return parser


def _quiet_libraries() -> None:
    """``-q`` also silences the progress bars and notices that transformers and peft print themselves."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if getattr(args, "quiet", False):
        _quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"steerlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
