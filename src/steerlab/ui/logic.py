"""What the web app computes, apart from how it is shown: side-by-side replies (the lab is ``steerlab.ui.lab``).

Kept free of Gradio so it can be tested directly; everything model-side goes through ``steerlab.serve.engine``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..serve.engine import Engine, GateInfo, RowOutput, RowSpec
from ..serve.reply import split_reply

GATE_WORDS = {1: "+1 (promote the call)", -1: "−1 (suppress a call)", 0: "0 (leave as is)"}


@dataclass
class Side:
    """One reply as the page shows it."""

    text: str
    content: str | None
    calls: list[dict]
    report: dict
    gate: GateInfo

    def summary(self) -> str:
        g = self.gate
        lines = []
        if g.gate is not None:
            lines.append(
                f"**gate** {GATE_WORDS[g.gate]} · **p(tool)** {g.p_tool:.3f} · **domain** {g.domain}"
            )
            lines.append(
                f"steering applied: **{'yes' if g.applied else 'no'}**"
                + (f" (strength={g.strength:g}, τ={g.tau:g}, layer {g.layer})" if g.applied else "")
            )
        elif g.note:
            lines.append(f"gate not consulted: {g.note}")
        if self.calls:
            for c, r in zip(self.calls, self.report["calls"]):
                verdict = "valid" if r["valid"] else "INVALID: " + "; ".join(r["problems"])
                lines.append(f"**call** `{c['function']['name']}({c['function']['arguments']})` — {verdict}")
        elif self.report["parse_errors"]:
            lines.append("**call marker, but no parsable call**: " + "; ".join(self.report["parse_errors"]))
        else:
            lines.append("no tool call")
        return "\n\n".join(lines)


def parse_tools_text(text: str) -> list[dict]:
    """The tools box: a JSON list of OpenAI tool definitions (validated as the server does)."""
    from ..serve.errors import ApiError
    from ..serve.protocol import parse_tools

    try:
        raw = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as err:
        raise ValueError(f"the tools box is not valid JSON: {err}") from None
    try:
        return parse_tools(raw)
    except ApiError as err:
        raise ValueError(str(err)) from None


def compare(
    engine: Engine, prompt: str, tools: list[dict], strength: float | None, tau: float | None, max_tokens: int
) -> tuple[Side, Side]:
    """Baseline (ASA off) and steered (ASA on, with this strength and tau) replies, generated in one batch."""
    if not prompt.strip():
        raise ValueError("type a prompt first")
    msgs = [{"role": "user", "content": prompt}]
    has = engine.steerer is not None
    base = RowSpec(msgs, tools, asa=False if has else None, max_tokens=max_tokens)
    steered = RowSpec(
        msgs,
        tools,
        asa=True if has else None,
        strength=strength if has else None,
        tau=tau if has else None,
        max_tokens=max_tokens,
    )
    outs = engine.run([engine.render(base), engine.render(steered)])
    return _side(outs[0], tools), _side(outs[1], tools)


def _side(out: RowOutput, tools: list[dict]) -> Side:
    content, calls, report = split_reply(out.text, out, tools, parse=bool(tools))
    return Side(out.text, content, calls, report, out.gate)


@dataclass
class LabData:
    """Captured states for the two prompt lists."""

    states: torch.Tensor
    n_pos: int


def lines(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines() if x.strip()]
