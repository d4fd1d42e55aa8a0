"""Tool-call formats: one class per call syntax, registered by name with ``@register_format``.

A format owns everything steerlab needs about its syntax: the marker whose appearance means "the model called a
tool", the closer that ends a call, the instruction that teaches it in a system prompt, an example, its parser
and renderer, the stop rules on generated text, and the start of a reply that forces a call (``prefill``). Prompts
(``steerlab.asa.prompt``), trigger metrics and stop rules (``steerlab.tools.triggers``), decoding under a schema
(``steerlab.asa.calls``) and the server (``steerlab.serve``) all ask the format by name (``format_spec``); none of
them names a marker. A new syntax is one subclass of ``ToolCallFormat`` (or of ``JsonBodyFormat``, for a JSON call
after a marker) with the decorator, in steerlab or in user code (docs/extending.md shows one).

This module holds the base classes, the registry and the entry points (``parse_tool_calls``, ``render_tool_call``,
``format_spec``); the built-in formats are in ``steerlab.tools.builtin_formats`` (registered when ``steerlab.tools``
is imported): ``tool_call_json``, ``lfm2_pythonic``, ``functioncall``, ``json``, ``markdown_json``, ``calculator``.
Parsing never raises on the model's text and never evaluates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, TypeVar

from ..base import UserError
from .calls import ParseError, ParseResult, ToolCall
from .json_calls import call_from_obj, call_head, call_objects, json_at, json_text

TRIGGER_MODES = ("prefix", "anywhere")


def check_mode(mode: str) -> str:
    """``mode`` itself if it is a trigger mode, else a UserError listing them."""
    if mode not in TRIGGER_MODES:
        raise UserError(f"unknown trigger mode {mode!r}; valid: {', '.join(TRIGGER_MODES)}")
    return mode


class ToolCallFormat:
    """A call syntax. Subclasses set the class attributes and implement ``parse`` and ``render``; the stop rules,
    detection and ``prefill`` have defaults that suit a marker-delimited call with a JSON body.

    ``name`` is set by ``register_format``. ``detectable``: ``parse_tool_calls(text)`` may pick this format when
    no format is named. ``schema_constrained``: the body is one JSON call between the marker and the closer, which
    ``steerlab.asa.calls.CallGrammar`` can decode under a tool's schema.
    """

    name: str = ""
    marker: ClassVar[str] = ""
    closer: ClassVar[str | None] = None
    example: ClassVar[str] = ""
    instruction: ClassVar[str] = ""
    detectable: ClassVar[bool] = True
    schema_constrained: ClassVar[bool] = False

    # -------------------------------------------------------------- syntax

    def parse(self, text: str) -> ParseResult:
        """The calls in ``text`` (``ParseResult.format`` is this format's name); malformed ones become errors."""
        raise NotImplementedError

    def render(self, calls: list[ToolCall]) -> str:
        """The text of ``calls`` in this syntax; ``parse(render(calls)).calls == calls``. A ValueError names what
        the syntax cannot hold."""
        raise NotImplementedError

    def detect(self, text: str) -> tuple[int, int] | None:
        """Evidence that ``text`` holds a call in this syntax, as ``(tier, position)``, lower is stronger (tier 0:
        the marker at that position); None: no evidence. ``parse_tool_calls`` without a format takes the
        strongest, then the earliest, then the first registered."""
        i = text.find(self.marker) if self.detectable else -1
        return None if i < 0 else (0, i)

    def bodies(self, text: str) -> list[tuple[int, str, bool]]:
        """``(offset, body, closed)`` after each marker, up to the closer or to the next marker / end of text."""
        out = []
        start, end = self.marker, self.closer
        pos = 0
        while True:
            i = text.find(start, pos)
            if i < 0:
                return out
            j0 = i + len(start)
            j = text.find(end, j0) if end else -1
            nxt = text.find(start, j0)
            if j < 0 or (0 <= nxt < j):
                j = nxt if nxt >= 0 else len(text)
                out.append((j0, text[j0:j], False))
                pos = j
            else:
                out.append((j0, text[j0:j], True))
                pos = j + len(end)

    def prefill(self, name: str | None = None) -> str:
        """The start of a reply that forces a call: the marker, and the call's head up to its arguments when a
        function is named."""
        return self.marker if name is None else self.marker + call_head(name)

    # -------------------------------------------------------------- decisions and stop rules

    def triggered(self, text: str, mode: str = "prefix") -> bool:
        """prefix: the reply starts with the marker (leading whitespace aside); anywhere: the marker appears."""
        if check_mode(mode) == "prefix":
            return text.lstrip().startswith(self.marker)
        return self.marker in text

    def could_still_trigger(self, prefix_text: str, mode: str = "prefix") -> bool:
        """Whether generation must go on to know if the reply triggers a call (False lets a row stop early).

        prefix: True while the output so far (leading whitespace ignored) is a prefix of the marker or contains
        it. anywhere: the marker may still come later, so always True.
        """
        if check_mode(mode) == "anywhere":
            return True
        s = prefix_text.lstrip()
        return self.marker in s or self.marker.startswith(s)

    def call_complete(self, text: str) -> bool:
        """Whether the first call in ``text`` is closed (without a closer: never known before the end)."""
        if self.marker not in text or self.closer is None:
            return False
        return self.closer in text.split(self.marker, 1)[1]

    def calls_done(self, text: str) -> bool:
        """Whether every call in ``text`` is closed and what follows it cannot open another (the server stops a
        reply there); without a closer, never."""
        spans = self.bodies(text) if self.closer is not None else []
        if not spans or not spans[-1][2]:  # no call, or the last one is still open
            return False
        off, body, _ = spans[-1]
        tail = text[off + len(body) + len(self.closer) :].lstrip()
        if not tail:
            return False
        return not (self.marker.startswith(tail) or tail.startswith(self.marker))


# ------------------------------------------------------------------ the registry

FORMAT_SPECS: dict[str, ToolCallFormat] = {}  # name -> the registered format, in registration order
F = TypeVar("F", bound=type[ToolCallFormat])


def register_format(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """Class decorator: register a ``ToolCallFormat`` subclass under ``name``, checked at once (a marker, an
    instruction, and an example that parses back to exactly one call that renders to a text parsing the same).

    Args:
        name: the name configs, prompts and the server use (``call_format``).
        replace: replace a format already registered under ``name`` (refused otherwise).

    Returns:
        The decorator; it returns the class unchanged and registers one instance of it.
    """

    def deco(cls: F) -> F:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a format needs a non-empty name, got {name!r}")
        if name in FORMAT_SPECS and not replace:
            taken = type(FORMAT_SPECS[name]).__name__
            raise ValueError(f"tool-call format {name!r} is already registered ({taken}); pass replace=True")
        fmt = cls()
        fmt.name = name
        problem = _check_format(fmt)
        if problem:
            raise ValueError(f"format {name!r} ({cls.__name__}): {problem}")
        FORMAT_SPECS[name] = fmt
        return cls

    return deco


def _check_format(fmt: ToolCallFormat) -> str | None:
    if not fmt.marker or not fmt.instruction:
        return "set its marker and instruction"
    if fmt.marker not in fmt.example:
        return f"its example {fmt.example!r} does not contain its marker {fmt.marker!r}"
    calls = fmt.parse(fmt.example).calls
    if len(calls) != 1:
        return f"its example {fmt.example!r} parses to {len(calls)} calls, not 1"
    back = fmt.parse(fmt.render(calls)).calls
    if back != calls:
        return f"render -> parse of its example's call gives {back!r}, not {calls!r}"
    return None


class _Names(Sequence[str]):
    """The registered format names in registration order: a live view, so a format registered later is in it."""

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return tuple(FORMAT_SPECS)[i]

    def __len__(self) -> int:
        return len(FORMAT_SPECS)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(FORMAT_SPECS))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, _Names)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(tuple(self))


TOOL_CALL_FORMATS: Sequence[str] = _Names()


def check_format(fmt: str) -> str:
    """``fmt`` itself if it names a registered format, else a UserError listing the registered ones."""
    if not isinstance(fmt, str) or fmt not in FORMAT_SPECS:
        raise UserError(f"unknown tool-call format {fmt!r}; valid: {', '.join(FORMAT_SPECS)}")
    return fmt


def schema_constrained_formats() -> list[str]:
    """The registered formats whose call ``steerlab.asa.calls.CallGrammar`` can decode under a tool's schema."""
    return [name for name, f in FORMAT_SPECS.items() if f.schema_constrained]


def format_spec(fmt: str) -> ToolCallFormat:
    """The registered format named ``fmt``.

    Args:
        fmt: a name in ``TOOL_CALL_FORMATS``.

    Returns:
        The format: its marker, closer, instruction, parser, renderer, stop rules and prefill.

    Raises:
        UserError: no format has that name (the message lists the registered ones).
    """
    return FORMAT_SPECS[check_format(fmt)]


# ------------------------------------------------------------------ a base for JSON calls


def one_or_list(calls: list[ToolCall]) -> str:
    """One call as a JSON object, several as a JSON list."""
    objs = call_objects(calls)
    return json_text(objs[0] if len(objs) == 1 else objs)


class JsonBodyFormat(ToolCallFormat):
    """A JSON call (``{"name", "arguments"}``) after a marker, up to a closer when there is one: set ``marker``,
    ``closer``, ``example`` and ``instruction`` and the parsing, rendering, stop rules and prefill come with it.
    With a closer, several calls are several closed blocks; without one, a JSON list after a single marker."""

    def parse(self, text: str) -> ParseResult:
        res = ParseResult(format=self.name)
        for off, body, closed in self.bodies(text):
            if body.strip():  # without a closer, free text after the JSON is the model talking on
                json_at(text[: off + len(body)], off, self.name, res, tail_ok=not closed)
            elif self.closer is not None:
                res.errors.append(ParseError(self.name, f"empty {self.marker}", "", (off, off + len(body))))
            else:
                res.errors.append(ParseError(self.name, f"no JSON after {self.marker}", "", (off, off)))
        return res

    def render(self, calls: list[ToolCall]) -> str:
        if self.closer is None:
            return self.marker + one_or_list(calls)
        return "".join(f"{self.marker}{json_text(o)}{self.closer}" for o in call_objects(calls))


# ------------------------------------------------------------------ module-level entry points


def trigger_marker(fmt: str) -> str:
    """The literal whose appearance in the output means the model decided to call a tool."""
    return format_spec(fmt).marker


def has_trigger(text: str, fmt: str) -> bool:
    """Whether the call marker of ``fmt`` appears anywhere in ``text``."""
    return format_spec(fmt).triggered(text, "anywhere")


def could_still_trigger(prefix_text: str, fmt: str, mode: str = "prefix") -> bool:
    """``format_spec(fmt).could_still_trigger``: whether generation must go on to know if the reply is a call."""
    check_mode(mode)
    return format_spec(fmt).could_still_trigger(prefix_text, mode)


def _detect(text: str) -> str | None:
    """The format whose call syntax appears in ``text``: strongest evidence, then earliest, then first registered."""
    best: tuple[tuple[int, int], int, str] | None = None
    for order, (name, fmt) in enumerate(FORMAT_SPECS.items()):
        key = fmt.detect(text)
        if key is not None and (best is None or (key, order) < best[:2]):
            best = (key, order, name)
    return None if best is None else best[2]


def parse_tool_calls(text: str, fmt: str | None = None) -> ParseResult:
    """Calls found in ``text``; malformed calls become ``errors``.

    Never raises on any text and never evaluates it: Pythonic calls are read from the syntax tree and only
    literal values are accepted. An unknown ``fmt`` is a UserError (a caller's mistake, not the model's).

    Args:
        text: the model's reply.
        fmt: a registered format name (``TOOL_CALL_FORMATS``); None detects it from the text.

    Returns:
        The calls, the format they were in (None when no call syntax was seen) and the parse errors.
    """
    if fmt is not None:
        check_format(fmt)
    if not isinstance(text, str):
        return ParseResult(
            format=fmt, errors=[ParseError(fmt or "?", f"expected text, got {type(text).__name__}")]
        )
    try:
        use = fmt or _detect(text)
        if use is None:
            return ParseResult()
        return FORMAT_SPECS[use].parse(text)
    except (RecursionError, MemoryError, ValueError, TypeError) as err:  # pathological nesting, huge numbers
        return ParseResult(
            format=fmt, errors=[ParseError(fmt or "?", f"could not parse: {type(err).__name__}")]
        )


def render_tool_call(call: ToolCall | dict | list, fmt: str) -> str:
    """The text of one call (or a list of calls) in a format; ``parse_tool_calls`` reads it back to the same calls.

    Args:
        call: a ``ToolCall``, a ``{"name", "arguments"}`` dict (or OpenAI's ``{"function": {...}}``), or a list.
        fmt: a registered format name.

    Returns:
        The call's text, marker and closer included.
    """
    spec = format_spec(fmt)
    calls = call if isinstance(call, list) else [call]
    return spec.render([c if isinstance(c, ToolCall) else call_from_obj(c) for c in calls])
