"""One configuration mechanism for every method: a dataclass per method drives YAML files and CLI flags alike.

A field is declared once with its type, default and help (``opt(default, "help")``); from that come the YAML
keys, the ``--field value`` flags and their ``--help`` text, the typed parsing of command-line strings, one
unknown-key check with a did-you-mean, and clear errors (``UserError``, exit code 2, no traceback) that name the
field, the bad value and what is allowed. Old names keep working through ``ALIASES``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

# the errors and checks live in steerlab.base (every layer raises them); their old home keeps exporting them
from .base.errors import DataError as DataError
from .base.errors import LayerError as LayerError
from .base.errors import UserError as UserError
from .base.errors import check_choice as check_choice
from .base.errors import check_layer_numbers as check_layer_numbers
from .base.errors import check_range as check_range
from .base.errors import did_you_mean as did_you_mean
from .base.files import read_user_text as read_user_text


def opt(default: Any, help: str = "", **kw: Any) -> Any:  # noqa: A002
    """A config field with its help text; lists and dicts get a fresh copy per instance."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is list:
        (arg,) = typing.get_args(hint) or (Any,)
        return f"list[{_type_name(arg)}]"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _options(hint: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(hint)
    return typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)


def _scalar(value: Any, typ: Any, name: str) -> Any:
    """``value`` as ``typ`` (bool, int, float, str), or a UserError naming the field."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise UserError(f"{name} must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise UserError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise UserError(f"{name} must be an integer, got {value!r}")
    if typ is float:
        if isinstance(value, bool):
            raise UserError(f"{name} must be a number, got {value!r}")
        try:
            out = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise UserError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(out):
            raise UserError(f"{name} must be a finite number, got {value!r}")
        return out
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{name} must be a string, got {value!r}")
    if typ is Any:
        return value
    raise TypeError(f"config type {typ!r} of {name} is not supported")


def _split_list(raw: str) -> list[str]:
    """A command-line list: ``1,2,3`` or ``[1, 2, 3]``."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    parts = [p.strip().strip("'\"") for p in text.split(",")]
    return [p for p in parts if p != ""] if text.strip() else []


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` (from YAML, or a command-line string) as the field's declared type."""
    errors = []
    # null first: ``--quantization null`` means None, not the string "null" of the field's str option
    for typ in sorted(_options(hint), key=lambda t: t is not type(None)):
        try:
            if typ is type(None):
                if value is None or (
                    isinstance(value, str) and value.strip().lower() in ("none", "null", "~")
                ):
                    return None
                raise UserError(f"{name} must be null")
            if typing.get_origin(typ) is list:
                (item,) = typing.get_args(typ) or (Any,)
                if isinstance(value, str):
                    # a list field given one string: a comma list, or one item (``--extra-layers 21``); a plain
                    # word that is no item (``auto``), or any word when the items are strings too, belongs to
                    # the field's str option, if it has one
                    one = "," not in value and not value.strip().startswith("[")
                    if one and str in _options(hint):
                        if item is str:
                            raise UserError(f"{name}: {value!r} is not a list")
                        return [_scalar(value, item, name)]
                    value_list: list = _split_list(value)
                elif isinstance(value, (list, tuple)):
                    value_list = list(value)
                elif isinstance(value, (int, float)) and not isinstance(value, bool) and item is not bool:
                    value_list = [value]  # YAML ``extra_layers: 21``: one item, as on the command line
                else:
                    raise UserError(f"{name} must be a list, got {value!r}")
                return [_scalar(v, item, f"{name}[{i}]") for i, v in enumerate(value_list)]
            return _scalar(value, typ, name)
        except UserError as err:
            errors.append(str(err))
    if len(errors) == 1:
        raise UserError(errors[0])
    raise UserError(f"{name} must be {_type_name(hint)}, got {value!r}")


@dataclass
class Config:
    """Base of every method's configuration dataclass."""

    ALIASES: ClassVar[dict[str, str]] = {}  # old key -> field name (kept working)
    RETIRED: ClassVar[
        dict[str, str]
    ] = {}  # old key -> what to write instead (refused, so a name means one thing)
    WHAT: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce(getattr(self, f.name), hints[f.name], f.name))
        self.validate()

    def validate(self) -> None:
        """Cross-field and range checks; raise UserError naming the field, the value and what is allowed."""

    # ---------------------------------------------------------------- building
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def canonical(cls, key: str) -> str:
        """A key as the field it names: aliases resolved, hyphens read as underscores."""
        key = key.replace("-", "_")
        return cls.ALIASES.get(key, key)

    @classmethod
    def from_dict(cls, data: dict, where: str = "") -> Config:
        if not isinstance(data, dict):
            raise UserError(
                f"{where or cls.WHAT}: expected a mapping of fields to values, got {type(data).__name__}"
            )
        names = cls.field_names()
        out: dict = {}
        for key, val in data.items():
            name = cls.canonical(str(key))
            if name in cls.RETIRED:
                raise UserError(
                    f"{where + ': ' if where else ''}{cls.WHAT} key {key!r} is retired: {cls.RETIRED[name]}"
                )
            if name not in names:
                valid = sorted(names)
                raise UserError(
                    f"{where + ': ' if where else ''}unknown {cls.WHAT} key {key!r}"
                    f"{did_you_mean(name, valid)}; valid keys: {', '.join(valid)}"
                )
            out[name] = val
        return cls(**out)

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(read_yaml(path), where=str(path))

    @classmethod
    def from_sources(
        cls,
        path: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
        base: dict[str, Any] | None = None,
    ) -> Config:
        """``base`` (e.g. the values a run recorded; keys that are no field are ignored), then a YAML file
        (optional), then ``overrides`` (typed values or command-line strings) on top."""
        names = set(cls.field_names())
        data = {cls.canonical(str(k)): v for k, v in (base or {}).items()}
        data = {k: v for k, v in data.items() if k in names}
        for k, v in (read_yaml(path) if path else {}).items():
            data[cls.canonical(str(k))] = v
        for k, v in (overrides or {}).items():
            data[cls.canonical(k)] = v
        return cls.from_dict(data, where=str(path) if path else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @classmethod
    def help_lines(cls) -> list[tuple[str, str, str, str]]:
        """(name, type, default, help) per field, for ``--help`` and the docs."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = "(required)"
            rows.append((f.name, _type_name(hints[f.name]), repr(default), f.metadata.get("help", "")))
        return rows


@dataclass
class ModelConfig(Config):
    """The model a command loads, declared once: every config that loads a model extends this (a subclass may
    redeclare a field to change its default or help, e.g. ``model`` defaulting to an asset's model)."""

    WHAT = "model config"

    model: str = opt("smollm2-135m", "alias (smollm2-135m), .gguf file, local model dir or hub id")
    device: str = opt("auto", "auto | cpu | cuda | mps")
    dtype: str = opt("auto", "auto | float32 | bfloat16 | float16")


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping, or a UserError saying what is wrong with the file (missing, malformed, not a mapping)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(read_user_text(p, "a YAML config"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{p} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: a config must be a mapping of fields to values, got {type(data).__name__}")
    return data
