"""steerlab serve with the embedded SmolLM2-135M: real tool calls through the openai client, with and without a
(reduced) ASA asset fitted in the test."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from serve_helpers import running_server  # noqa: E402
from steerlab.serve.app import create_app  # noqa: E402
from steerlab.serve.engine import Engine  # noqa: E402
from steerlab.tools import validate_call  # noqa: E402

pytestmark = [pytest.mark.embedded, pytest.mark.slow]
TOOLS = Engine.default_tools()


@pytest.fixture(scope="module")
def asset(smollm, tmp_path_factory):
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.stages import runner
    from steerlab.stages import ModelHolder

    cfg = AsaConfig(
        limit_per_cell=2,
        strengths=[0.5],
        taus=[0.6],
        betas=[0.0],
        n_top_layers=1,
        extra_layers=[18],
        max_new_tokens_call=16,
        batch_size=16,
        n_boot=50,
    )
    models = ModelHolder()
    models.put("smollm2-135m", smollm)
    r = runner(cfg, tmp_path_factory.mktemp("serve-embedded") / "run", progress=False, models=models)
    r.run("evaluate")  # the rows the parity test compares with
    return r.run("asset")["path"]


@pytest.fixture(scope="module")
def server(smollm, asset):
    with running_server(create_app(lambda: Engine(smollm, asset))) as base:
        yield base


def test_served_reply_equals_the_evaluate_row_and_the_steerer_on_the_embedded_model(server, smollm, asset):
    """What an agent receives is what was measured, on the real model: for TEST prompts of both labels, the reply
    through the openai client (alone, and four at once) starts with the evaluate stage's output of the asset's row
    token for token, AsaSteerer gives that output exactly, and the gate and p_tool agree."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from steerlab.asa.runtime import AsaSteerer
    from steerlab.runs import load_json

    run = Path(asset).parent
    row = load_json(run / "evaluate" / "result.json")["asset_row"]
    preds = [json.loads(x) for x in (run / "evaluate" / "predictions.jsonl").read_text().splitlines()]
    mine = [p for p in preds if p["condition"] == row]
    chosen = [p for p in mine if p["label"] == 1][:2] + [p for p in mine if p["label"] == 0][:2]
    chosen += [p for p in mine if "conv" in p["id"]][:2]  # conversations ending in a tool result
    meta = {e["id"]: e for e in load_json(run / "extract" / "meta.json")["splits"]["test"]}
    st = AsaSteerer(smollm, asset)
    convs = [
        meta[p["id"]].get("messages") or [{"role": "user", "content": meta[p["id"]]["prompt"]}]
        for p in chosen
    ]
    n_new = 16  # the reduced run's max_new_tokens_call
    res = st.run(convs, max_new_tokens=n_new, full_answers=False)
    assert [x.steered.text for x in res] == [p["output"] for p in chosen]
    c = openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=300)

    def ask(messages: list[dict]) -> tuple[str, dict]:
        r = c.chat.completions.create(
            model="smollm2-135m", messages=messages, tools=st.builder.tools, max_tokens=n_new
        )
        return r.model_extra["steerlab"]["raw"], r.model_extra["steerlab"]

    def as_sent(messages: list[dict]) -> list[dict]:  # an agent sends call arguments as a JSON string
        out = []
        for m in messages:
            calls = [
                {**tc, "function": {**tc["function"], "arguments": json.dumps(tc["function"]["arguments"])}}
                if not isinstance(tc["function"]["arguments"], str)
                else tc
                for tc in m.get("tool_calls") or []
            ]
            out.append({**m, "tool_calls": calls} if calls else m)
        return out

    sent = [as_sent(m) for m in convs]
    alone = [ask(m) for m in sent]
    with ThreadPoolExecutor(len(sent)) as pool:
        together = list(pool.map(ask, sent))
    for p, x, a, t in zip(chosen, res, alone, together):
        assert a[0].startswith(p["output"]) and a[0] == t[0], (p["id"], a[0], p["output"])
        assert a[1]["gate"] == x.gate and a[1]["p_tool"] == pytest.approx(x.p_tool, abs=1e-4)


def chat(base: str, prompt: str, **kw):  # noqa: ANN201
    c = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)
    return c.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": prompt}], tools=TOOLS, **kw
    )


def test_required_tool_choice_prefills_a_call_and_reports_its_validity(server):
    """The 135M model's calls are often malformed (LESSONS.md): whatever it writes, the reply is either parsed
    calls, each with the schema check steerlab.tools gives, or the raw prefilled text with the parse error."""
    r = chat(server, "What is 1,234 multiplied by 56?", tool_choice="required", max_tokens=48)
    msg, s = r.choices[0].message, r.model_extra["steerlab"]
    assert s["gate"] is None and "forces a call" in s["note"]
    if msg.tool_calls:
        assert r.choices[0].finish_reason == "tool_calls" and len(s["calls"]) == len(msg.tool_calls)
        for tc, rep in zip(msg.tool_calls, s["calls"]):
            problems = validate_call(
                {"name": tc.function.name, "arguments": json.loads(tc.function.arguments)}, TOOLS
            )
            assert rep == {"name": tc.function.name, "valid": not problems, "problems": problems}
    else:
        assert msg.content.startswith("<tool_call>") and s["parse_errors"]


def test_gate_is_reported_and_asa_off_equals_the_plain_model(server, smollm):
    prompts = ["Translate 'good night' into German.", "Why is the sky blue?"]
    with running_server(create_app(lambda: Engine(smollm))) as plain:
        for p in prompts:
            on = chat(server, p, max_tokens=24)
            off = chat(server, p, max_tokens=24, extra_body={"steerlab": {"asa": False}})
            s_on, s_off = on.model_extra["steerlab"], off.model_extra["steerlab"]
            assert s_on["asa"] is True and s_on["gate"] in (-1, 0, 1) and 0.0 <= s_on["p_tool"] <= 1.0
            assert s_on["domain"] in ("code", "math", "search", "translation")
            assert s_off["asa"] is False and s_off["p_tool"] == pytest.approx(s_on["p_tool"], abs=1e-4)
            base = chat(plain, p, max_tokens=24)
            assert off.choices[0].message.content == base.choices[0].message.content
            if s_on["gate"] == 0:
                assert on.choices[0].message.content == off.choices[0].message.content


def test_streamed_call_matches_the_whole_reply(server):
    kw = dict(tool_choice={"type": "function", "function": {"name": "calculator"}}, max_tokens=40)
    whole = chat(server, "What is 12 times 7?", **kw)
    chunks = list(chat(server, "What is 12 times 7?", stream=True, **kw))
    streamed = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    want = whole.choices[0].message.tool_calls or []
    assert [(t.function.name, json.loads(t.function.arguments)) for t in streamed] == [
        (t.function.name, json.loads(t.function.arguments)) for t in want
    ]
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    if not want:  # no parsable call: the streamed text is the whole reply
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == whole.choices[0].message.content
