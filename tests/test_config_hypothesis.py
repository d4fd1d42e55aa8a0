"""Properties of the one config mechanism, through the real ``steerlab`` entry point: for every typed field of every
method's config, a value gives the same config from a YAML file and from ``--field=value`` as when the dataclass
is built with it directly; a value the config refuses is exit code 2 and one line from both, never a traceback.

Nothing runs: the test stops each command right after its config is parsed."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import string
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import steerlab.cli
from steerlab.asa.bfcl import BfclConfig
from steerlab.asa.config import AsaConfig
from steerlab.config import Config, UserError, _options
from steerlab.pas.config import PasConfig
from steerlab.sae.config import SparsitySweepConfig, SpliceCostConfig, ToolUseConfig

COMMANDS = {
    AsaConfig: ["asa", "sweep"],
    PasConfig: ["pas", "run"],
    ToolUseConfig: ["sae", "run"],
    SpliceCostConfig: ["sae", "splice-cost"],
    SparsitySweepConfig: ["sae", "sparsity-sweep"],
    BfclConfig: ["bfcl", "eval"],
}
NULL_WORDS = {"none", "null", "~"}
# words that are valid for many str fields (choices), so valid values are drawn often, not only refusals
WORDS = [
    "auto",
    "cpu",
    "float32",
    "bfloat16",
    "block",
    "mlp",
    "attn",
    "all",
    "topk",
    "jumprelu",
    "relu",
    "none",
    "router",
    "model",
    "prefix",
    "anywhere",
    "builtin",
    "default",
    "tool_call_json",
    "lfm2_pythonic",
    "mean_difference",
    "grad",
    "asa",
    "cal",
    "train",
    "PASf",
    "iPASwo",
    "irrelevance",
    "simple_python",
    "4:28:3",
    "2:",
]
# command-line lists are split on commas and may be bracketed: strings keep clear of those characters
_SAFE = st.text(alphabet=string.ascii_letters + string.digits + "_-./:", min_size=1, max_size=10)
_TEXT = (_SAFE | st.sampled_from(WORDS)).filter(lambda s: s.lower() not in NULL_WORDS)


class Parsed(BaseException):
    """Raised right after a command's config is parsed: carries it out of ``main`` before any work starts."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg


def _scalar(typ: object) -> st.SearchStrategy:
    if typ is bool:
        return st.booleans()
    if typ is int:
        return st.integers(-3, 3000)
    if typ is float:
        return st.floats(-10.0, 4000.0) | st.sampled_from([0.0, 0.5, 0.99, 1e-3, math.inf, math.nan])
    if typ is str:
        return _TEXT
    raise AssertionError(f"no strategy for {typ!r}")


def values(hint: object) -> st.SearchStrategy:
    """Values of a field's declared type (every option of a union)."""
    parts = []
    for typ in _options(hint):
        if typ is type(None):
            parts.append(st.none())
        elif typing.get_origin(typ) is list:
            (item,) = typing.get_args(typ)
            parts.append(st.lists(_scalar(item), max_size=4))
        else:
            parts.append(_scalar(typ))
    return st.one_of(parts)


def cli_text(v: object, draw_plain: bool) -> str:
    """How a user writes ``v`` after ``--field=``."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        inner = ",".join(cli_text(x, True) for x in v)
        return inner if draw_plain and v else f"[{inner}]"
    return str(v)


def _run(argv: list[str]) -> tuple[Config | None, int | None, str]:
    """``main(argv)``: the parsed config, or the exit code and what was printed to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = steerlab.cli.main(argv)
        except Parsed as p:
            return p.cfg, None, err.getvalue()
    return None, code, err.getvalue()


@pytest.fixture(scope="module")
def stop_after_parsing():
    """Commands stop with ``Parsed`` once their config is built; one parser serves every call."""
    parser = steerlab.cli.build_parser()
    original = Config.from_sources.__func__

    def spy(cls, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise Parsed(original(cls, *args, **kwargs))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Config, "from_sources", classmethod(spy))
        mp.setattr(steerlab.cli, "build_parser", lambda: parser)
        yield


def _field_values(cls: type[Config]) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    return st.sampled_from(fields).flatmap(
        lambda name: st.tuples(st.just(name), values(hints[name]), st.booleans())
    )


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda c: c.__name__)
def test_a_value_means_the_same_from_yaml_flags_and_python(cls, stop_after_parsing):
    workdir = Path(tempfile.mkdtemp(prefix="cfg-hypothesis-"))
    empty, from_yaml = workdir / "empty.yaml", workdir / "field.yaml"
    empty.write_text("")

    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_field_values(cls))
    def check(case: tuple[str, object, bool]) -> None:
        name, value, plain = case
        try:
            want: Config | None = cls(**{name: value})
        except UserError:
            want = None
        event("taken" if want is not None else "refused")
        flag = f"--{name.replace('_', '-')}={cli_text(value, plain)}"
        from_yaml.write_text(yaml.safe_dump({name: value}))
        for how, argv in (
            ("flag", [*COMMANDS[cls], "-c", str(empty), flag]),
            ("yaml", [*COMMANDS[cls], "-c", str(from_yaml)]),
        ):
            cfg, code, err = _run(argv)
            if want is not None:
                assert cfg is not None, f"{how} {argv}: refused a value the config takes: {err}"
                assert getattr(cfg, name) == getattr(want, name), (how, argv)
            else:
                assert cfg is None, f"{how} {argv}: took a value the config refuses ({getattr(cfg, name)!r})"
                lines = err.strip().splitlines()
                assert code == 2 and len(lines) == 1 and lines[0].startswith("steerlab: error: "), (how, err)

    check()


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda c: c.__name__)
def test_any_text_after_a_flag_is_parsed_or_one_line(cls, stop_after_parsing):
    """Whatever a user types after ``--field=``, the command parses it as the config would or says in one line
    (exit 2) what is wrong."""
    empty = Path(tempfile.mkdtemp(prefix="cfg-text-")) / "empty.yaml"
    empty.write_text("")
    names = [f.name for f in dataclasses.fields(cls)]
    junk = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)

    @settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(names), junk | _TEXT)
    def check(name: str, text: str) -> None:
        try:
            want: Config | None = cls(**{name: text})
        except UserError:
            want = None
        cfg, code, err = _run([*COMMANDS[cls], "-c", str(empty), f"--{name.replace('_', '-')}={text}"])
        if want is not None:
            assert cfg is not None and getattr(cfg, name) == getattr(want, name), err
        else:
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and "Traceback" not in err, err

    check()
