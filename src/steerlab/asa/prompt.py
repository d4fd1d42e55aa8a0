"""ASA prompts: a system prompt that lists the tools and the call format, few-shot turns, then the conversation.

The embedded SmolLM2 has no tool template, so the tools and the call format (``tool_call_json`` by default; its
instruction comes from the format, ``steerlab.tools.formats``) are described in the system prompt. A model whose chat template takes ``tools=`` (Qwen, LFM2, Llama 3) gets them
through its own template instead (``use_template_tools=True``).

One renderer for the pipeline and the server: a conversation (OpenAI messages: user, assistant with
``tool_calls``, ``tool`` results) becomes chat turns here and nowhere else, so the gate reads the same tokens in
the evaluate stage as behind ``steerlab serve``. A few-shot turn calling a tool that is not offered is left out:
the model is never shown a call to a tool it does not have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import UserError
from ..tools import format_spec, render_tool_call, tool_spec

# Two turns: one call (with its result and the answer that uses it) and one plain answer (DESIGN.md: the embedded
# model needs both to call tools at all; the result turn shows what to do after a tool result: answer with it).
DEFAULT_FEW_SHOT = [
    {
        "user": "What is 1,234 multiplied by 56?",
        "call": {"name": "calculator", "arguments": {"expression": "1234 * 56"}},
        "result": "69104",
        "answer": "1,234 multiplied by 56 is 69,104.",
    },
    {"user": "What is the capital of Japan?", "answer": "The capital of Japan is Tokyo."},
]
_SEARCH = {
    "user": "Which team won last night's hockey game in Toronto?",
    "call": {"name": "web_search", "arguments": {"query": "Toronto hockey game result last night"}},
}
_CODE = {
    "user": "Run this and tell me what it prints: print(len('ferryboat') * 3)",
    "call": {"name": "python_interpreter", "arguments": {"code": "print(len('ferryboat') * 3)"}},
}
_TRANSLATE = {
    "user": "How do you say 'the ferry leaves at dawn' in Dutch?",
    "call": {
        "name": "translator",
        "arguments": {"text": "the ferry leaves at dawn", "target_language": "Dutch"},
    },
}
_ANSWER = {
    "user": "What makes leaves change colour in autumn?",
    "answer": "Chlorophyll breaks down as days shorten, revealing yellow and orange pigments.",
}
# Few-shot variants a user would try instead of steering (the baselines of the ASA report)
FEW_SHOT_SETS: dict[str, list[dict]] = {
    "none": [],
    "default": list(DEFAULT_FEW_SHOT),
    "four": [DEFAULT_FEW_SHOT[0], DEFAULT_FEW_SHOT[1], _SEARCH, _ANSWER],
    "per_tool": [DEFAULT_FEW_SHOT[0], DEFAULT_FEW_SHOT[1], _CODE, _SEARCH, _ANSWER, _TRANSLATE],
}


def _tool_line(tool: dict) -> str:
    fn = tool.get("function", tool)
    params = fn.get("parameters", {}).get("properties", {})
    args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in params.items())
    return f"- {fn['name']}({args}): {fn.get('description', '')}"


TOOL_RESPONSE = "<tool_response>\n{}\n</tool_response>"


def _args_dict(arguments: object) -> dict:
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    return json.loads(arguments)


def render_conversation(
    messages: Sequence[dict], call_format: str = "tool_call_json", template_tools: bool = False
) -> tuple[list[str], list[dict]]:
    """(system texts, chat turns) of an OpenAI-style conversation: an assistant's ``tool_calls`` written in the call
    format (or passed as the template's ``tool_calls``), a ``tool`` result as a user turn in ``<tool_response>``
    (or a template ``tool`` turn); ``developer`` counts as ``system``."""
    systems, turns = [], []
    for m in messages:
        role = m["role"]
        text = m.get("content") or ""
        if role in ("system", "developer"):
            systems.append(text)
        elif role == "assistant" and m.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": _args_dict(c["function"].get("arguments"))}
                for c in m["tool_calls"]
            ]
            if template_tools:
                tc = [{"type": "function", "function": c} for c in calls]
                turns.append({"role": "assistant", "content": text, "tool_calls": tc})
            else:
                turns.append({"role": "assistant", "content": text + render_tool_call(calls, call_format)})
        elif role == "tool":
            if template_tools:
                turns.append({"role": "tool", "content": text, "tool_call_id": m.get("tool_call_id")})
            else:
                turns.append({"role": "user", "content": TOOL_RESPONSE.format(text)})
        else:
            turns.append({"role": role, "content": text})
    return systems, turns


def shot_messages(shot: dict) -> list[dict]:
    """A few-shot turn as OpenAI messages: a user prompt, then an answer, a call, or a call, its result and the
    answer that uses it."""
    msgs: list[dict] = [{"role": "user", "content": shot["user"]}]
    if "call" in shot:
        call = {"name": shot["call"]["name"], "arguments": shot["call"]["arguments"]}
        msgs.append(
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]}
        )
        if "result" in shot:
            msgs.append({"role": "tool", "content": str(shot["result"])})
    if "answer" in shot:
        msgs.append({"role": "assistant", "content": shot["answer"]})
    return msgs


def check_shot(i: int, shot: object) -> None:
    ok = isinstance(shot, dict) and isinstance(shot.get("user"), str)
    if ok:
        keys = {k for k in ("call", "result", "answer") if k in shot}
        ok = keys in ({"call"}, {"answer"}, {"call", "result", "answer"})
    if not ok:
        raise UserError(
            f"few-shot turn {i} must have 'user' and one of: 'answer'; 'call'; or 'call', 'result' and 'answer' "
            f"(a call, its result, and the answer using it): {shot}"
        )


@dataclass
class PromptBuilder:
    """Builds the chat messages for one prompt or conversation; identical prefixes let generation cache them once."""

    tools: list[dict]
    call_format: str = "tool_call_json"
    few_shot: list[dict] = field(default_factory=lambda: list(DEFAULT_FEW_SHOT))
    use_template_tools: bool = False
    system_intro: str = "You are a helpful assistant. You can use these tools:"

    def __post_init__(self) -> None:
        self.instruction = format_spec(self.call_format).instruction  # an unknown format fails here
        for i, shot in enumerate(self.few_shot):
            check_shot(i, shot)

    def system(self) -> str:
        if self.use_template_tools:
            return self.instruction
        return "\n".join([self.system_intro, *(_tool_line(t) for t in self.tools), self.instruction])

    def shots(self) -> list[dict]:
        """The few-shot turns shown with these tools: a turn calling a tool that is not offered is left out."""
        names = {tool_spec(t)["name"] for t in self.tools}
        return [s for s in self.few_shot if "call" not in s or s["call"]["name"] in names]

    def messages(self, prompt: str | Sequence[dict], system: Sequence[str] = ()) -> list[dict]:
        """System prompt (tools, call format, and any ``system`` texts), few-shot turns, then ``prompt``: a user
        prompt, or a conversation (OpenAI messages; its own system messages join the system prompt)."""
        convo = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        head = [m for shot in self.shots() for m in shot_messages(shot)]
        _, shots = render_conversation(head, self.call_format, self.use_template_tools)
        systems, turns = render_conversation(convo, self.call_format, self.use_template_tools)
        sys_text = "\n\n".join([self.system(), *system, *systems])
        return [{"role": "system", "content": sys_text}, *shots, *turns]

    def describe(self) -> dict:
        return {
            "call_format": self.call_format,
            "few_shot": self.few_shot,
            "use_template_tools": self.use_template_tools,
            "system": self.system(),
        }
