"""The model's text in OpenAI's shape: ``tool_calls`` parsed from the native call format, or plain content.

Also the streaming splitter, which sends plain text as it comes but holds back anything that may turn out to be
the start of a tool call or of a stop string, so that a streamed reply and a whole reply agree.
"""

from __future__ import annotations

import json
import secrets
import time

from ..tools import format_spec, parse_tool_calls, validate_call
from .engine import RowOutput


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def split_reply(
    text: str, out: RowOutput, tools: list[dict], parse: bool
) -> tuple[str | None, list[dict], dict]:
    """(content, tool_calls, steerlab call report). Content is the text before the first call marker.

    Only calls that validate against the request's own tools are returned as ``tool_calls``: a call to a tool the
    request did not offer, or one whose arguments break its schema, is reported in ``steerlab.calls`` (with its
    problems) and ``steerlab.dropped_calls``, never handed to the agent to execute."""
    if out.stop_hit is not None:
        text = text.split(out.stop_hit, 1)[0]
    report: dict = {"calls": [], "parse_errors": [], "dropped_calls": 0}
    if not parse:
        return text, [], report
    marker = format_spec(out.call_format).marker
    res = parse_tool_calls(text, out.call_format)
    report["parse_errors"] = [e.message for e in res.errors]
    before = text.split(marker, 1)[0].strip() if marker in text else text
    if not res.calls:
        if marker in text:
            report["note"] = "the reply opened a call that did not parse; it is not returned as a tool call"
            return before, [], report
        return text, [], report
    calls = []
    for c in res.calls:
        problems = validate_call(c, tools)
        report["calls"].append({"name": c.name, "valid": not problems, "problems": problems})
        if problems:
            report["dropped_calls"] += 1
            continue
        calls.append(
            {
                "id": f"call_{secrets.token_hex(12)}",
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
            }
        )
    if report["dropped_calls"]:
        report["note"] = (
            f"{report['dropped_calls']} call(s) did not validate against the offered tools and were not returned "
            "as tool calls (see calls[].problems)"
        )
    return (before or None) if calls else before, calls, report


def finish_reason(out: RowOutput, calls: list[dict]) -> str:
    if calls:
        return "tool_calls"
    return "length" if out.finish == "length" else "stop"


def usage(out: RowOutput) -> dict:
    return {
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": out.prompt_tokens + out.completion_tokens,
    }


def steerlab_field(out: RowOutput, report: dict) -> dict:
    """What steerlab adds to a response: the gate and what the operating point did, the calls as parsed and
    validated, and the raw reply text (what the model wrote, before it was split into content and tool calls)."""
    return {**out.gate.to_dict(), "call_format": out.call_format, **report, "raw": out.text}


def completion(out: RowOutput, model: str, tools: list[dict], parse: bool) -> dict:
    """A whole ``chat.completion`` object."""
    content, calls, report = split_reply(out.text, out, tools, parse)
    msg: dict = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = calls
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": msg, "finish_reason": finish_reason(out, calls), "logprobs": None}
        ],
        "usage": usage(out),
        "steerlab": steerlab_field(out, report),
    }


class StreamSplitter:
    """Feed text deltas; get back the content that is safe to send now. Text that could still become a call
    marker or a stop string is held; after a marker, nothing more is sent as content (calls go at the end)."""

    def __init__(self, call_format: str, stops: tuple[str, ...], parse: bool) -> None:
        self.marker = format_spec(call_format).marker if parse else None
        self.stops = stops
        self.text = ""
        self.sent = 0
        self.closed = False  # a marker or a stop string was seen

    def _holdback(self, s: str) -> int:
        """Length of the longest suffix of ``s`` that is a proper prefix of a marker or stop string."""
        keys = [k for k in (self.marker, *self.stops) if k]
        best = 0
        for k in keys:
            for n in range(min(len(k) - 1, len(s)), best, -1):
                if s.endswith(k[:n]):
                    best = n
                    break
        return best

    def feed(self, delta: str) -> str:
        self.text += delta
        if self.closed:
            return ""
        cut = len(self.text)
        for k in (self.marker, *self.stops):
            if k and k in self.text[self.sent :]:
                cut = min(cut, self.text.index(k, self.sent))
                self.closed = True
        if not self.closed:
            cut -= self._holdback(self.text)
        out = self.text[self.sent : cut]
        self.sent = max(self.sent, cut)
        return out

    def rest(self, content: str | None) -> str:
        """Content of the final reply not sent yet (the held-back tail of a plain reply)."""
        if not content:
            return ""
        sent = self.text[: self.sent]
        return content[len(sent) :] if content.startswith(sent) else ""
