"""The Gemma turn format steerlab gives the 270M base GGUF, which carries no chat template (fast: no model)."""

from transformers.utils.chat_template_utils import _compile_jinja_template

from steerlab.models.assembled import CHAT_TEMPLATES


def test_gemma_turns_render_as_gemma_does():
    t = _compile_jinja_template(CHAT_TEMPLATES["gemma3-270m"])
    msgs = [
        {"role": "system", "content": "Tools: f"},
        {"role": "user", "content": " hi "},
        {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
        {"role": "tool", "content": "5"},
    ]
    out = t.render(messages=msgs, bos_token="<bos>", add_generation_prompt=True)
    assert out == (
        "<bos><start_of_turn>user\nTools: f\n\nhi<end_of_turn>\n"
        "<start_of_turn>model\n<tool_call>{}</tool_call><end_of_turn>\n"
        "<start_of_turn>user\n5<end_of_turn>\n<start_of_turn>model\n"
    )
    assert t.render(messages=msgs[1:2], bos_token="<bos>", add_generation_prompt=False) == (
        "<bos><start_of_turn>user\nhi<end_of_turn>\n"
    )
