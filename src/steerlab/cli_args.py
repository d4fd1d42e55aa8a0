"""Command-line options generated from a config dataclass: ``-c config.yaml`` plus one ``--field value`` per field
(hyphens or underscores, ``--field=value`` too), each with its type, default and help, parsed by the config's own
types. Every method command is built the same way."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .config import Config

if TYPE_CHECKING:
    from .stages import Stage

# a command beside a method's stages (run, status): its name, its help and what it sets (func, stage)
Extra = tuple[str, str, dict[str, Any]]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default, unless its help already speaks of one or there is none to show
    (an unset value, an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text.lower()
            or default is None
            or default is False
            or default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


def add_config_args(p: argparse.ArgumentParser, cls: type[Config], skip: tuple[str, ...] = ()) -> None:
    """``-c/--config`` and one option per field of ``cls`` (values stay strings until the config parses them).

    A bool field's flag alone means true (``--no-browser``; ``--no-browser false`` works too). A field's metadata
    may give ``arg_type`` (an argparse type: a bad flag is refused while parsing, as argparse words it; the
    config's own checks still cover the YAML file) or ``repeat=True`` (a list given one item per flag,
    ``--prompt a --prompt b``, for items that may hold commas)."""
    p.add_argument(
        "-c", "--config", metavar="YAML", help=f"YAML file of {cls.WHAT} fields (flags override it)"
    )
    group = p.add_argument_group(f"{cls.WHAT} fields (also settable in the YAML file)")
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}
    for name, typ, default, text in cls.help_lines():
        if name in skip:
            continue
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        for old, new in cls.ALIASES.items():  # the old names still work as flags too
            if new == name:
                flags += [f"--{old.replace('_', '-')}"] + ([f"--{old}"] if "_" in old else [])
        how: dict[str, Any] = {"metavar": typ.upper().replace(" ", "")}
        if typ == "bool":
            how.update(nargs="?", const="true")
        if meta[name].get("repeat"):
            how.update(action="append", metavar="TEXT")
        if meta[name].get("arg_type") is not None:
            how["type"] = meta[name]["arg_type"]
        group.add_argument(
            *flags,
            dest=f"cfg__{name}",
            default=None,
            help=(f"{text} (default: {default})" if "default" not in text else text).replace("%", "%%"),
            **how,
        )


def config_from_args(
    cls: type[Config], args: argparse.Namespace, base: dict[str, Any] | None = None, **fixed: Any
) -> Config:
    """``base`` values (a run's recorded config), the YAML file named by ``-c`` (if any), then every flag given,
    then ``fixed`` values."""
    overrides = {
        key[len("cfg__") :]: val
        for key, val in vars(args).items()
        if key.startswith("cfg__") and val is not None
    }
    overrides.update({k: v for k, v in fixed.items() if v is not None})
    return cls.from_sources(getattr(args, "config", None), overrides, base=base)


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (and quieter libraries)")


def add_stage_commands(
    sub: argparse._SubParsersAction,
    stages: Sequence[Stage],
    cls: type[Config],
    func: Callable[[argparse.Namespace], int],
    *,
    before: Sequence[Extra] = (),
    after: Sequence[Extra] = (),
    aliases: dict[str, list[str]] | None = None,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    note: str = "",
) -> dict[str, argparse.ArgumentParser]:
    """``steerlab <method> <stage>`` for every stage of a method, its help the stage's own ``doc`` (one
    description, so the two cannot drift), plus the ``before``/``after`` commands that take the same options
    (``run``, ``status``). Every one takes ``-c`` and the fields of ``cls``, then ``options(p)`` (a method's own
    switches) and ``-q``; it calls ``func`` with ``args.stage`` set to its name unless its entry says otherwise.
    ``note`` ends each description (e.g. what a stage does with its missing inputs)."""
    rows: list[Extra] = [*before, *((s.name, s.doc, {}) for s in stages), *after]
    parsers = {}
    for name, doc, sets in rows:
        p = sub.add_parser(
            name,
            help=doc,
            description=f"{doc}{note}",
            aliases=(aliases or {}).get(name, []),
        )
        add_config_args(p, cls)
        if options is not None:
            options(p)
        add_common_args(p)
        p.set_defaults(**{"func": func, "stage": name, **sets})
        parsers[name] = p
    return parsers
