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
