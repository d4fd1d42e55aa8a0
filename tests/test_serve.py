"""steerlab serve on a tiny model: real HTTP on loopback with the real ``openai`` client.

Every expected value comes from an independent path: the engine called directly, the asset's controller on
captured states, or a solo request compared with the same request inside a batch.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from serve_helpers import running_server, tiny_asset  # noqa: E402
from steerlab.serve.app import ServeConfig, create_app  # noqa: E402
from steerlab.serve.engine import Engine, RowSpec  # noqa: E402

PROMPT = "What is 3+4?"
MODEL = "tiny-llama"  # the served model's id: other names get 404 model_not_found


@pytest.fixture(scope="module")
def lm(tiny_models):
    return tiny_models("llama")


@pytest.fixture(scope="module")
def asset(lm, tmp_path_factory):
    return tiny_asset(tmp_path_factory.mktemp("serve-asa"), lm)


@pytest.fixture(scope="module")
def engine(lm, asset):
    return Engine(lm, asset)


@pytest.fixture(scope="module")
def server(engine):
    with running_server(create_app(lambda: engine, ServeConfig(window_ms=150, max_batch=8))) as base:
        yield base


@pytest.fixture(scope="module")
def plain_server(lm):
    with running_server(create_app(lambda: Engine(lm))) as base:
        yield base


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)


def ask(base: str, content: str = PROMPT, tools: bool = True, **kw):  # noqa: ANN201
    tl = Engine.default_tools() if tools else openai.NOT_GIVEN
    return client(base).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],
        tools=tl,
        max_tokens=kw.pop("max_tokens", 12),
        **kw,
    )


def test_models_lists_the_model_and_its_asset(server, engine):
    models = client(server).models.list().data
    assert [m.id for m in models] == ["tiny-llama"]
    meta = models[0].model_extra["steerlab"]
    assert meta["asset"]["layer"] == engine.steerer.manifest["layer"]
    assert meta["asset"]["domains"] == engine.steerer.params.domains


def test_reply_equals_the_engine_run_directly(server, engine):
    r = ask(server, tools=False, max_tokens=9)
    direct = engine.run([engine.render(RowSpec([{"role": "user", "content": PROMPT}], max_tokens=9))])[0]
    assert r.choices[0].message.content == direct.text
    assert r.choices[0].finish_reason == ("length" if direct.finish == "length" else "stop")
    assert (
        r.usage.prompt_tokens == direct.prompt_tokens
        and r.usage.completion_tokens == direct.completion_tokens
    )
    s = r.model_extra["steerlab"]
    assert s["asa"] is False and s["gate"] is None and "no tools" in s["note"]


def test_gate_decision_matches_the_assets_controller_on_captured_states(server, engine, lm):
    from steerlab.capture import capture

    r = ask(server)
    s = r.model_extra["steerlab"]
    prep = engine.render(RowSpec([{"role": "user", "content": PROMPT}], Engine.default_tools()))
    m = engine.steerer.manifest
    layers = list(range(m["layer"] + 1))  # an all-layer gate reads every layer up to its own
    acts = capture(lm, [prep.prompt], layers, sites=m["site"], chat=False, progress=False)
    h = torch.stack([acts[k, m["site"]] for k in layers], dim=1)
    d = engine.steerer.steering().controller([]).decide(h.float())
    assert s["p_tool"] == pytest.approx(float(d.p_tool[0]), abs=1e-5)
    assert s["gate"] == int(d.gate[0]) and s["domain"] == engine.steerer.params.domains[int(d.domain[0])]
    assert s["asa"] is True and s["tau"] == m["tau"] and s["strength"] == m["strength"]


def test_a_probe_gate_asset_decides_as_its_controller_on_all_layers(lm, asset, tmp_path_factory):
    """An asset whose gate is one probe on the states of layers 0..L (``gate: all_layers``, read online through
    reader hooks): the engine's decision equals the asset's controller on those states captured offline."""
    import shutil
    from pathlib import Path

    from steerlab.capture import capture

    root = tmp_path_factory.mktemp("serve-asa-probe") / "run"
    shutil.copytree(
        Path(asset).parent, root
    )  # reuse the stages before the gate; the module's asset stays as it is
    eng = Engine(lm, tiny_asset(root, lm, gates=("all_layers",)))
    m = eng.steerer.manifest
    assert m["gate"] == "all_layers" and m["layer"] >= 1  # at least one earlier layer is read by a hook
    prompts = [PROMPT, "Translate 'good morning' into French.", "Why is the sky blue?"]
    preps = [
        eng.render(RowSpec([{"role": "user", "content": p}], Engine.default_tools(), max_tokens=2))
        for p in prompts
    ]
    outs = eng.run(preps)
    layers = list(range(m["layer"] + 1))
    acts = capture(lm, [x.prompt for x in preps], layers, sites=m["site"], chat=False, progress=False)
    h = torch.stack([acts[k, m["site"]] for k in layers], dim=1)
    d = eng.steerer.steering().controller([]).decide(h.float())
    for i, o in enumerate(outs):
        assert o.gate.p_tool == pytest.approx(float(d.p_tool[i]), abs=1e-5)
        assert o.gate.gate == int(d.gate[i])
    h_last_only = h.clone()
    h_last_only[:, :-1] = 0  # the decision does depend on the earlier layers
    assert not torch.allclose(
        eng.steerer.steering().controller([]).decide(h_last_only.float()).p_tool, d.p_tool
    )


def test_batched_requests_never_see_each_others_steering(server, plain_server):
    """Requests sent together are batched (window 150 ms) and each equals the same request sent alone."""
    variants = [
        {"asa": False},
        {"alpha": 3.0},
        {},
        {"alpha": -3.0},
        {"asa": False},
        {"alpha": 3.0, "tau": 0.9},
    ]
    before = httpx.get(server.replace("/v1", "/health")).json()["batches"]["max_rows"]
    with ThreadPoolExecutor(len(variants)) as pool:
        together = list(pool.map(lambda v: ask(server, extra_body={"steerlab": v}), variants))
    after = httpx.get(server.replace("/v1", "/health")).json()["batches"]["max_rows"]
    assert max(before, after) >= 2  # the server did put concurrent requests in one batch
    alone = [ask(server, extra_body={"steerlab": v}) for v in variants]
    for v, a, b in zip(variants, together, alone):
        assert a.choices[0].message.content == b.choices[0].message.content, v
        sa, sb = dict(a.model_extra["steerlab"]), dict(b.model_extra["steerlab"])
        assert sa.pop("p_tool") == pytest.approx(
            sb.pop("p_tool"), abs=1e-4
        )  # padding changes float sums only
        assert sa == sb, v
    gate = together[0].model_extra["steerlab"]["gate"]
    assert gate != 0  # this prompt is gated, so steering must change the output
    off = together[0].choices[0].message.content
    assert off == ask(plain_server).choices[0].message.content  # ASA off = a server without an asset
    assert together[1].choices[0].message.content != off and together[3].choices[0].message.content != off
    assert together[5].model_extra["steerlab"]["tau"] == 0.9


def test_stream_reassembles_to_the_whole_reply(server):
    whole = ask(server, max_tokens=10)
    chunks = list(ask(server, max_tokens=10, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert finals[0].model_extra["steerlab"]["p_tool"] == whole.model_extra["steerlab"]["p_tool"]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # streamed, not one blob


def test_a_request_admitted_mid_decode_is_prefilled_inside_the_step_and_equals_its_solo_run(lm, asset):
    """A request that arrives while others decode goes through the model with their next step (one forward,
    ``Running.packed`` counts it), with or without an asset (the gate reads and pushes its rows' last prompt tokens
    inside the packed forward); every reply and gate decision equals the same request served alone."""
    specs = [
        RowSpec([{"role": "user", "content": p}], Engine.default_tools(), max_tokens=m, stream=False)
        for p, m in ((PROMPT, 9), ("Hi there, what can you do for me today?", 6), ("Book a flight", 7))
    ]
    for eng in (Engine(lm), Engine(lm, asset)):
        running = eng.running()
        done: dict[int, object] = {}

        def keep(i: int, kind: str, payload: object, done: dict = done) -> None:
            if kind == "done":
                done[i] = payload

        running.admit([eng.render(specs[0])], keep, [0])
        running.step()
        running.admit([eng.render(s) for s in specs[1:]], keep, [1, 2])
        while running:
            running.step()
        assert running.packed == 2
        for i, s in enumerate(specs):
            alone = eng.run([eng.render(s)])[0]
            assert (done[i].text, done[i].finish) == (alone.text, alone.finish)
            got, ref = done[i].gate.to_dict(), alone.gate.to_dict()
            # other matmul shapes: float rounding
            assert got["p_tool"] == pytest.approx(ref["p_tool"], abs=1e-4)
            assert {**got, "p_tool": None} == {**ref, "p_tool": None}


def test_a_reply_read_whole_sends_no_event_per_token(engine):
    """A request without ``stream`` gets its gate decision and its result and nothing per token (each event costs
    the server's event loop a wake-up while the batch decodes); a streaming row beside it in the same batch still
    streams its whole reply, and both replies equal their solo runs."""
    events: dict[int, list[str]] = {0: [], 1: [], 2: []}
    specs = [
        RowSpec([{"role": "user", "content": PROMPT}], Engine.default_tools(), max_tokens=10, stream=False),
        RowSpec([{"role": "user", "content": PROMPT}], Engine.default_tools(), max_tokens=10, stream=True),
        RowSpec(
            [{"role": "user", "content": "Hi"}],
            Engine.default_tools(),
            "required",
            max_tokens=10,
            stream=False,
        ),
    ]
    deltas: list[str] = []

    def emit(i: int, kind: str, payload: object) -> None:
        events[i].append(kind)
        if kind == "delta" and i == 1:
            deltas.append(payload)

    together = engine.run([engine.render(s) for s in specs], emit)
    assert events[0] == ["gate", "done"] and events[2] == ["gate", "done"]
    assert events[1].count("delta") >= 2 and "".join(deltas) == together[1].text
    for s, got in zip(specs, together):
        alone = engine.run([engine.render(s)])[0]
        assert (got.text, got.finish) == (alone.text, alone.finish)


def test_sse_wire_format(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server}/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [x for x in r.iter_lines() if x]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_forced_function_is_prefilled_and_the_gate_not_consulted(server):
    """tool_choice naming a function: the reply starts with the marker whatever the gate, and the call is decoded
    under that function's schema, so it is always a valid call to it (here from a random-weight model)."""
    r = ask(server, tool_choice={"type": "function", "function": {"name": "calculator"}}, max_tokens=120)
    s = r.model_extra["steerlab"]
    assert s["gate"] is None and "forces a call" in s["note"]
    calls = r.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["calculator"] and r.choices[0].finish_reason == "tool_calls"
    assert set(json.loads(calls[0].function.arguments)) == {"expression"}
    assert s["dropped_calls"] == 0 and s["calls"][0]["valid"]


def test_required_tool_choice_gives_a_valid_call_to_an_offered_tool(server):
    tools = Engine.default_tools()[1:3]  # not the calculator: the call must name one of these
    r = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 3+4?"}],
        tools=tools,
        tool_choice="required",
        max_tokens=200,  # a random model fills a string argument to the pattern's 100 characters
    )
    (call,) = r.choices[0].message.tool_calls
    offered = {t["function"]["name"] for t in tools}
    assert call.function.name in offered
    from steerlab.tools import validate_call

    assert (
        validate_call({"name": call.function.name, "arguments": json.loads(call.function.arguments)}, tools)
        == []
    )


BAD = [
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ({"messages": "hello"}, "messages"),
    ({"messages": []}, "messages"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "messages[0].content[0]",
    ),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
        "tools[0].function.parameters",
    ),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {}, "required": ["x"]},
                    },
                }
            ]
        },
        "tools[0].function.parameters",
    ),
    ({"tools": [{"name": "f"}]}, "tools[0]"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required", "tools": None}, "tool_choice"),
    ({"n": 2}, "n"),
    ({"temperature": 3}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"foo": 1}, "foo"),
    ({"logprobs": True}, "logprobs"),
    ({"steerlab": {"tau": 0.4}}, "steerlab.tau"),
    ({"steerlab": {"alpha": "big"}}, "steerlab.alpha"),
    ({"steerlab": {"mode": "x"}}, "steerlab"),
    ({"stop": [1]}, "stop"),
]


@pytest.mark.parametrize("patch,param", BAD, ids=[p for _, p in BAD])
def test_bad_requests_get_400_with_openai_error_and_serving_goes_on(server, patch, param):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        "tools": Engine.default_tools(),
        **patch,
    }
    body = {k: v for k, v in body.items() if v is not None}
    r = httpx.post(f"{server}/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and "Traceback" not in r.text
    with pytest.raises(openai.BadRequestError) as info:  # the openai client sees the same error
        rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
        client(server).chat.completions.create(model=MODEL, messages=body["messages"], extra_body=rest)
    assert info.value.status_code == 400
    assert ask(server, max_tokens=2).choices[0].finish_reason in ("stop", "length")


def test_malformed_json_oversized_body_and_long_prompt(server):
    r = httpx.post(
        f"{server}/chat/completions",
        content=b"{not json",
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    huge = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    r = httpx.post(f"{server}/chat/completions", json=huge, timeout=30)
    assert r.status_code == 413 and "1000000" in r.json()["error"]["message"]
    with pytest.raises(openai.APIStatusError) as info:
        ask(server, content="y" * 5000)  # the char tokenizer: > 4096 prompt tokens
    assert info.value.status_code == 413 and info.value.body["code"] == "context_length_exceeded"
    r = httpx.get(f"{server}/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    assert ask(server, max_tokens=2).choices  # still serving


def test_asa_options_need_an_asset(plain_server):
    with pytest.raises(openai.BadRequestError) as info:
        ask(plain_server, extra_body={"steerlab": {"asa": True}})
    assert info.value.body["code"] == "no_asset"
    s = ask(plain_server, extra_body={"steerlab": {"asa": False}}).model_extra["steerlab"]
    assert s["asa"] is False and s["note"] == "the server has no ASA asset"


def test_503_while_loading_then_ready(lm):
    gate = threading.Event()

    def slow_load() -> Engine:
        gate.wait(60)
        return Engine(lm)

    with running_server(create_app(slow_load), wait_ready=False) as base:
        with pytest.raises(openai.APIStatusError) as info:
            ask(base, tools=False, max_tokens=2)
        assert info.value.status_code == 503 and info.value.body["code"] == "model_loading"
        r = httpx.get(f"{base}/models")
        assert r.status_code == 503 and r.headers["retry-after"]
        gate.set()
        for _ in range(200):
            if httpx.get(base.replace("/v1", "/health")).json()["status"] == "ready":
                break
            threading.Event().wait(0.05)
        assert ask(base, tools=False, max_tokens=2).choices[0].message.content is not None


def test_failed_load_is_reported_not_raised():
    def bad_load() -> Engine:
        raise ValueError("model 'nope' is not a known alias")

    with running_server(create_app(bad_load)) as base:
        r = httpx.post(
            f"{base}/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 503 and "nope" in r.json()["error"]["message"] and "Traceback" not in r.text


def test_multi_turn_tool_result_is_accepted(server):
    msgs = [
        {"role": "user", "content": "What is 2*21?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "2*21"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    r = client(server).chat.completions.create(
        model=MODEL, messages=msgs, tools=Engine.default_tools(), max_tokens=3
    )
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_sampling_is_seeded_per_request(server):
    a = ask(server, temperature=1.5, seed=7, max_tokens=16).choices[0].message.content
    b = ask(server, temperature=1.5, seed=7, max_tokens=16).choices[0].message.content
    c = ask(server, temperature=1.5, seed=8, max_tokens=16).choices[0].message.content
    assert a == b and a != c


def _load_bodies() -> list[dict]:
    msg = [{"role": "user", "content": "What is 12 times 7?"}]
    tools = Engine.default_tools()
    return [
        {"model": MODEL, "messages": msg, "max_tokens": 3},
        {"model": MODEL, "messages": msg, "tools": tools, "max_tokens": 3},
        {"model": MODEL, "messages": msg, "tools": tools, "max_tokens": 3, "steerlab": {"asa": False}},
        {"model": MODEL, "messages": msg, "tools": tools, "max_tokens": 3, "stream": True},
    ]


def test_load_no_request_lost_and_memory_flat(server):
    """Concurrent clients, a mix of plain, tool, ASA-off and streamed requests: every one is answered and the
    process's memory after a warm-up grows by less than 64 MiB (3000 requests with STEERLAB_FULL=1)."""
    import os

    from steerlab.serve.loadtest import rss_mb, run_load

    n = 3000 if os.environ.get("STEERLAB_FULL") else 300
    run_load(server, _load_bodies(), n=50, concurrency=12)
    res = run_load(
        server, _load_bodies(), n=n, concurrency=12, time_limit_s=900, memory=rss_mb, sample_every=50
    )
    assert res["sent"] == n and res["ok"] == n and res["lost"] == 0 and res["error_status"] == 0
    mem = [m for _, m in res["memory_mb"]]
    assert mem[-1] - mem[1] < 64, res["memory_mb"]


def test_cli_errors_name_the_bad_value(tmp_path, capsys):
    from steerlab.cli import main

    assert main(["serve", "--asset", str(tmp_path)]) == 2
    assert f"{tmp_path} is not an asset directory" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny", "--temperature", "5"]) == 2
    assert "--temperature must be in [0, 2], got 5.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--port", "-3"])
    assert "must be in 1..65535, got -3" in capsys.readouterr().err


def test_serve_exits_2_with_one_line_when_the_asset_cannot_load(tmp_path, lm):
    """A server whose asset fails to load stops (exit 2, one line), instead of answering 503 forever."""
    import shutil
    import subprocess
    import sys

    bad = tmp_path / "bad_asset"
    shutil.copytree(tiny_asset(tmp_path / "run", lm), bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["tau"] = 0.77  # edited after writing: the manifest's own digest no longer matches
    (bad / "manifest.json").write_text(json.dumps(manifest))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "steerlab.cli",
            "serve",
            "--model",
            "tiny",
            "--asset",
            str(bad),
            "--port",
            port,
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if "failed to load" in x]
    assert len(errors) == 1 and "modified after the asset was written" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("with_asset", [True, False])
def test_prefix_cache_across_requests_equals_no_cache(lm, asset, with_asset):
    """The system prompt + tools + few-shot head's KV cache, kept across requests, changes no token (with and
    without the gate), and the second request with the same tools reuses it."""
    path = asset if with_asset else None
    cached, plain = Engine(lm, path), Engine(lm, path, prefix_cache_entries=0)
    tools = Engine.default_tools()
    specs = [
        RowSpec([{"role": "user", "content": p}], tools, max_tokens=24)
        for p in ("What is 3+4?", "Translate hello into German", "Tell me a joke")
    ]
    first = [cached.run([cached.render(s)])[0] for s in specs]  # one at a time: each reuses the head
    batch = cached.run([cached.render(s) for s in specs])
    want = [plain.run([plain.render(s)])[0] for s in specs]
    assert [o.text for o in first] == [o.text for o in batch] == [o.text for o in want]
    # p(tool) from a prefix computed apart: equal up to float summation order (split softmax), the gate the same
    assert [o.gate.gate for o in first] == [o.gate.gate for o in want]
    assert [o.gate.p_tool for o in first] == pytest.approx(
        [o.gate.p_tool for o in want], abs=1e-4
    ) or not with_asset
    st = cached.prefixes.stats()
    assert st["entries"] == 1 and st["misses"] == 1 and st["hits"] >= 3 and first[0].prefix_reused > 50
    assert plain.prefixes is None and want[0].prefix_reused == 0


def test_prefix_store_is_bounded(lm):
    from steerlab.generation.prefix_store import PrefixStore

    store = PrefixStore(lm, max_entries=2)
    for k in range(4):
        store.get([5, 6, 7, 8 + k])
    assert len(store) == 2 and store.stats()["misses"] == 4
    store.get([5, 6, 7, 11])  # the most recent is kept
    assert store.stats()["hits"] == 1
    small = PrefixStore(lm, max_entries=8, max_bytes=1)
    small.get([5, 6, 7])
    small.get([5, 6, 8])
    assert len(small) == 1  # over the byte bound: only the newest entry is kept


def test_a_client_that_disconnects_cancels_its_row(lm):
    """An abandoned stream stops decoding (was: decoded to its token limit)."""
    import time

    engine = Engine(lm)
    with running_server(create_app(lambda: engine)) as base:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me a long story"}],
            "max_tokens": 1000,
            "stream": True,
        }
        with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and '"content"' in line and '"content": ""' not in line:
                    break  # the first real token: now leave
        deadline = time.monotonic() + 60
        stats = {}
        while time.monotonic() < deadline:
            stats = httpx.get(base.replace("/v1", "/health")).json().get("batches", {})
            if stats.get("cancelled") or stats.get("rows"):
                break
            time.sleep(0.2)
    assert stats["cancelled"] == 1, stats
