"""Tool calls as data: a call, a parse result, and a structured parse error."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True)
class ParseError:
    format: str
    message: str
    snippet: str = ""


@dataclass
class ParseResult:
    calls: list[ToolCall] = field(default_factory=list)
    format: str | None = None
    errors: list[ParseError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.calls) and not self.errors
