"""The one ``steerlab`` command: representation engineering of LLM behaviour, tool calling first.

Each method registers its subcommands through ``add_cli(subparsers)``. A user's mistake
(``steerlab.config.UserError``: a bad value, a missing file, an unknown model or option) prints one line and exits
2; an ``OSError`` (the system refused to read or write something) and a sweep whose jobs failed (each listed with
its reason) exit 1; any other exception is a bug and says so (exit 1); Ctrl-C exits 130; ``--traceback`` shows the
Python traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import NoReturn

from . import __version__

# module -> its top-level commands; each module defines add_cli(subparsers)
_COMMAND_MODULES = (
    "steerlab.asa.cli",
    "steerlab.pas.cli",
    "steerlab.sae.cli",
    "steerlab.gguf_cli",
    "steerlab.serve.cli",
    "steerlab.ui.cli",
    "steerlab.agent.cli",
)
# (module, command): commands a module adds under another module's command; it defines add_cli(subparsers of
# that command). A sweep over a method's runs registers under the method's command, so the method never imports
# its sweeps (the layers in pyproject.toml's [tool.importlinter])
_SUBCOMMAND_MODULES = (("steerlab.sweeps.asa", "asa"),)
DESCRIPTION = """Read what a language model represents, change what it does, and measure the result honestly.

Commands:
  info   the model's architecture, layers and steering sites
  asa    probe-gated steering for tool calling (run, stages, demo, chat)
  bfcl   Berkeley Function Calling Leaderboard evaluation, plain model vs an ASA asset
  pas    steering sweeps for multiple-choice benchmarks
  sae    tool-use transcoders: data, finetune, transcoders, splices, attribution
  gguf   llama.cpp control vectors: export a steering or ASA asset, import one, show one
  serve  an OpenAI-compatible chat-completions server with per-request ASA
  ui     a local web app: baseline vs steered side by side, build a steering vector
  agent  agent benchmark: held-out tasks through a real tool loop against steerlab serve

Every method command takes -c config.yaml and --field value; `steerlab <command> --help` lists them.
Runs work offline on the embedded model (smollm2-135m)."""


def _cmd_info(args: argparse.Namespace) -> int:
    from .cli_args import config_from_args
    from .config import ModelConfig
    from .models import SITE_DOC, load_model

    cfg = config_from_args(ModelConfig, args)
    lm = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    from .threads import applied

    info = {
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "device": str(lm.device),
        "dtype": str(lm.dtype),
        **lm.arch.describe(),
        "sites": SITE_DOC,
        "source": {k: v for k, v in lm.source.items() if k != "file_key"},
        "torch_threads": (applied() or _threads_now()).as_dict(),
    }
    print(json.dumps(info, indent=2))
    return 0


def _threads_now():  # noqa: ANN202
    from .threads import choose

    return choose()


class _Parser(argparse.ArgumentParser):
    """A mistake in the arguments themselves (a bad ``--port``, a missing value) is one line and exit 2, like
    every other user mistake, instead of the whole usage text; subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="steerlab", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"steerlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="load a model and print its architecture, layers and sites")
    from .cli_args import add_config_args
    from .config import ModelConfig

    add_config_args(info, ModelConfig)
    info.set_defaults(func=_cmd_info)
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as err:
            if err.name and mod_name.startswith(err.name):
                continue  # that method is not part of this build
            raise
        mod.add_cli(sub)
    for mod_name, command in _SUBCOMMAND_MODULES:
        if command in sub.choices:
            importlib.import_module(mod_name).add_cli(_subparsers(sub.choices[command]))
    _add_threads(parser)
    _mark_options(parser)
    _show_defaults(parser)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The subcommands of ``parser`` (the object ``add_subparsers`` returned)."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every command's ``--help`` shows its options' defaults (the top level keeps its hand-written text)."""
    from .cli_args import DefaultsHelpFormatter

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if child.formatter_class is argparse.HelpFormatter:
                    child.formatter_class = DefaultsHelpFormatter
                _show_defaults(child)


THREADS_HELP = (
    "torch intra-op threads (default: the cores not busy with other work, at most the physical cores; "
    "OMP_NUM_THREADS in the environment is respected)"
)


def _add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` after any command too (``steerlab asa run --threads 1``); the top level's value is kept
    unless a command gives its own."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if "--threads" not in child._option_string_actions:
                    child.add_argument(
                        "--threads", type=int, default=argparse.SUPPRESS, metavar="N", help=THREADS_HELP
                    )
                _add_threads(child)


def _mark_options(parser: argparse.ArgumentParser) -> None:
    """Each command remembers its own options, so an unknown one can be answered with a did-you-mean."""
    parser.set_defaults(_options=sorted(parser._option_string_actions))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _mark_options(child)


def _unknown(args: argparse.Namespace, extra: list[str]) -> int:
    from .config import did_you_mean

    options = getattr(args, "_options", [])
    first = next((x for x in extra if x.startswith("-")), extra[0])
    name = first.split("=", 1)[0]
    hint = did_you_mean(name, options) if name.startswith("-") else ""
    print(
        f"steerlab: error: unrecognized argument {first!r}{hint}; see --help for this command's options",
        file=sys.stderr,
    )
    return 2


def _quiet_libraries() -> None:
    """``-q`` also silences the progress bars and notices that transformers and peft print themselves."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def _user_errors() -> tuple[type[BaseException], ...]:
    """What counts as a user's mistake: ``UserError`` and its subclasses (a bad value or name, a missing or
    damaged file, a model that cannot be loaded, an asset that does not fit). Anything else is a bug."""
    from .config import UserError

    return (UserError,)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        return _unknown(args, extra)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if getattr(args, "quiet", False):
        _quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .config import UserError

    try:
        if args.threads is not None and args.threads < 1:
            raise UserError(f"--threads must be an integer >= 1, got {args.threads}")
        from .threads import apply

        choice = apply(args.threads)
        logging.getLogger("steerlab").info("torch threads: %s", choice.describe())
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.traceback:
            raise
        print(
            "\nsteerlab: interrupted (finished stages are kept; run the same command again to resume)",
            file=sys.stderr,
        )
        return 130
    except Exception as err:  # noqa: BLE001 - every failure gets one honest line (or the traceback)
        if args.traceback:
            raise
        return _report(err)


def _report(err: Exception) -> int:
    """Print what went wrong and return the exit code: 2 for the user's mistake, 1 otherwise, naming a bug a bug."""
    from .executors import SweepError

    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, _user_errors()):
        print(f"steerlab: error: {first}", file=sys.stderr)
        return 2
    if isinstance(err, SweepError):  # some jobs failed, each with its own reason: list them all
        print(f"steerlab: error: {text}", file=sys.stderr)
        return 1
    if isinstance(
        err, OSError
    ):  # the system refused (a file unreadable or unwritable, a disk full, a port taken)
        print(f"steerlab: error: {text}", file=sys.stderr)
        return 1
    detail = f": {first}" if text else ""
    print(
        f"steerlab: internal error: {type(err).__name__}{detail}; this is a bug in steerlab, please report it; "
        "rerun with --traceback to see where it happened",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
