"""ASA prompts: a system prompt that lists the tools and the call format, plus configurable few-shot turns.

The embedded SmolLM2 has no tool template, so the tools and the ``<tool_call>{json}</tool_call>`` format are
described in the system prompt. A model whose chat template takes ``tools=`` (Qwen, LFM2, Llama 3) gets them
through its own template instead (``use_template_tools=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tools import format_spec, render_tool_call

# Two turns: one call and one plain answer (DESIGN.md: the embedded model needs both to call tools at all).
DEFAULT_FEW_SHOT = [
    {
        "user": "What is 1,234 multiplied by 56?",
        "call": {"name": "calculator", "arguments": {"expression": "1234 * 56"}},
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


@dataclass
class PromptBuilder:
    """Builds the chat messages for one user prompt; identical prefixes let generation cache them once."""

    tools: list[dict]
    call_format: str = "tool_call_json"
    few_shot: list[dict] = field(default_factory=lambda: list(DEFAULT_FEW_SHOT))
    use_template_tools: bool = False
    system_intro: str = "You are a helpful assistant. You can use these tools:"

    def __post_init__(self) -> None:
        self.instruction = format_spec(
            self.call_format
        ).instruction  # unknown formats fail here, listing the valid
        for i, shot in enumerate(self.few_shot):
            if "user" not in shot or ("call" in shot) == ("answer" in shot):
                raise ValueError(
                    f"few-shot turn {i} must have 'user' and exactly one of 'call' or 'answer': {shot}"
                )

    def system(self) -> str:
        if self.use_template_tools:
            return self.instruction
        return "\n".join([self.system_intro, *(_tool_line(t) for t in self.tools), self.instruction])

    def render_call(self, call: dict) -> str:
        return render_tool_call(call, self.call_format)

    def messages(self, user_prompt: str) -> list[dict]:
        msgs = [{"role": "system", "content": self.system()}]
        for shot in self.few_shot:
            msgs.append({"role": "user", "content": shot["user"]})
            content = self.render_call(shot["call"]) if "call" in shot else shot["answer"]
            msgs.append({"role": "assistant", "content": content})
        msgs.append({"role": "user", "content": user_prompt})
        return msgs

    def describe(self) -> dict:
        return {
            "call_format": self.call_format,
            "few_shot": self.few_shot,
            "use_template_tools": self.use_template_tools,
            "system": self.system(),
        }
