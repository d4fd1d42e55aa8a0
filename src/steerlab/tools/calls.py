"""Tool calls as data: a call, a parse result, and a structured parse error."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToolCall:
    """One call: the tool's name and its keyword arguments (JSON-like values)."""

    name: str
    arguments: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True)
class ParseError:
    """A malformed call: which format, what is wrong, the offending text and where it lies in the input.

    ``span`` is ``(start, end)`` character offsets into the parsed text, or None when unknown.
    """

    format: str
    message: str
    snippet: str = ""
    span: tuple[int, int] | None = None


@dataclass
class ParseResult:
    """Calls found in a text, the format they were in (None when no call syntax was seen), and errors."""

    calls: list[ToolCall] = field(default_factory=list)
    format: str | None = None
    errors: list[ParseError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.calls) and not self.errors
