"""steerlab serve at its edges, as a new user meets them: the command line (port range, a busy port) and requests
a strict OpenAI-compatible server refuses (unknown model, a body that is not JSON, nesting deep enough to crash a
recursive parser, a misspelled schema type, a tool result answering no call), each one real HTTP on loopback.
Then the whole chat API is fuzzed from the server's own OpenAPI schema with schemathesis: no 5xx, and every 4xx
in OpenAI's error shape."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from serve_helpers import running_server, tiny_asset  # noqa: E402
from steerlab.serve.app import ServeConfig, create_app  # noqa: E402
from steerlab.serve.engine import Engine  # noqa: E402

MODEL = "tiny-llama"
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "calculator", "arguments": '{"expression": "1"}'},
}


@pytest.fixture(scope="module")
def engine(tiny_models, tmp_path_factory):
    lm = tiny_models("llama")
    return Engine(lm, tiny_asset(tmp_path_factory.mktemp("edges-asa"), lm))


@pytest.fixture(scope="module")
def server(engine):
    with running_server(create_app(lambda: engine, ServeConfig(max_tokens_limit=6))) as base:
        yield base


def _post(base: str, body: object = None, **kw) -> httpx.Response:  # noqa: ANN003
    return httpx.post(f"{base}/chat/completions", json=body, timeout=60, **kw)


def _error(r: httpx.Response, status: int) -> dict:
    """The OpenAI error object of a refused request, with no traceback anywhere in the reply."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert "Traceback" not in r.text
    return err


def _body(**kw) -> dict:  # noqa: ANN003
    return {"model": MODEL, "messages": [{"role": "user", "content": "What is 3+4?"}], "max_tokens": 2, **kw}


# ----------------------------------------------------------------------------- the command line


def test_port_out_of_range_is_one_line_and_exit_2():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "steerlab.cli", "serve", "--model", "tiny", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "steerlab serve: error: argument --port: must be in 1..65535, got 99999 (see `steerlab serve --help`)"
    )


def test_busy_port_fails_before_the_url_is_printed(capsys):
    from steerlab.cli import main

    with socket.socket() as other:  # another server holds the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        for cmd in ("serve", "ui"):
            assert main([cmd, "--model", "tiny", "--port", str(port)]) == 2
            out = capsys.readouterr()
            assert out.out == "", out.out  # no "http://..." that looks ready
            assert out.err.strip() == (
                f"steerlab: error: port {port} is already in use on 127.0.0.1 (another server?); "
                "choose another --port"
            )


def test_serve_ui_and_demo_help_show_defaults():
    from steerlab.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    asa = next(a for a in sub["asa"]._actions if a.dest == "asa_command").choices
    for parser in (sub["serve"], sub["ui"], asa["demo"], asa["chat"]):
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                shown = parser._get_formatter()._expand_help(action)  # the text --help prints for it
                assert "default" in shown, f"{parser.prog} {action.option_strings}: {shown}"
    serve = " ".join(sub["serve"].format_help().split())
    assert "TCP port (1-65535) (default: 8000)" in serve and "(default: 1000000)" in serve


# ----------------------------------------------------------------------------- requests


def test_the_push_size_is_strength_and_alpha_its_old_name():
    """steerlab.strength is the push size; steerlab.alpha (its old name) means the same and says so when wrong."""
    from steerlab.serve.errors import ApiError
    from steerlab.serve.openapi import request_schema
    from steerlab.serve.protocol import parse_steerlab

    assert parse_steerlab({"strength": 2}, True) == parse_steerlab({"alpha": 2}, True) == (None, 2.0, None)
    for raw, param, says in [
        ({"strength": 2, "alpha": 2}, "steerlab.strength", "not both"),
        (
            {"alpha": "big"},
            "steerlab.alpha",
            "steerlab.alpha (the old name of steerlab.strength) must be a number",
        ),
        ({"strength": 11}, "steerlab.strength", "steerlab.strength must be a number in [-10.0, 10.0]"),
        ({"strength": 1}, "steerlab", "steerlab.asa/strength/tau need one"),
    ]:
        with pytest.raises(ApiError) as err:
            parse_steerlab(raw, raw != {"strength": 1})
        assert err.value.param == param and says in err.value.message, err.value.message
    props = request_schema(None, 64)["properties"]["steerlab"]["properties"]
    assert props["alpha"]["deprecated"] is True and "deprecated" not in props["strength"]


def test_unknown_model_is_404_model_not_found(server):
    err = _error(_post(server, _body(model="gpt-4o")), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "'gpt-4o' does not exist" in err["message"] and MODEL in err["message"]
    assert _post(server, _body()).status_code == 200  # the served id is accepted


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_not_declared_as_json_is_415(server, ctype):
    import json

    r = httpx.post(
        f"{server}/chat/completions", content=json.dumps(_body()), headers={"content-type": ctype}, timeout=60
    )
    err = _error(r, 415)
    assert err["code"] == "unsupported_media_type" and ctype in err["message"]
    ok = httpx.post(
        f"{server}/chat/completions",
        content=json.dumps(_body()),
        headers={"content-type": "application/json; charset=utf-8"},
        timeout=60,
    )
    assert ok.status_code == 200


@pytest.mark.parametrize("depth", [65, 900, 5000])
def test_deeply_nested_json_is_400_not_500(server, depth):
    raw = '{"model": "' + MODEL + '", "messages": [{"role": "user", "content": "x"}], "metadata": '
    raw += "[" * depth + "]" * depth + "}"
    r = httpx.post(
        f"{server}/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    err = _error(r, 400)
    assert err["code"] == "invalid_json" and "more than 64 levels deep" in err["message"]


def test_json_that_python_reads_but_json_forbids_is_400(server):
    for raw in ('{"temperature": NaN}', '{"seed": Infinity}', '{"seed": ' + "9" * 5000 + "}"):
        r = httpx.post(
            f"{server}/chat/completions",
            content=raw,
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert _error(r, 400)["code"] == "invalid_json"


def _tool(schema: dict) -> list[dict]:
    return [{"type": "function", "function": {"name": "f", "parameters": schema}}]


@pytest.mark.parametrize(
    "schema,bad",
    [
        ({"type": "object", "properties": {"x": {"type": "strng"}}}, "'strng' (did you mean 'string'?)"),
        ({"type": "object", "properties": {"x": {"type": ["string", "nul"]}}}, "'nul'"),
        ({"type": "object", "properties": {"x": {"type": "array", "items": {"type": "flaot"}}}}, "'flaot'"),
        ({"type": "object", "properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "int"}]}}}, "'int'"),
        ({"type": "object", "properties": {"x": {"type": "object", "properties": {"y": 3}}}}, "got 3"),
        ({"type": "object", "properties": {"x": {"enum": "abc"}}}, "enum must be a list"),
    ],
)
def test_tool_schema_types_are_checked(server, schema, bad):
    err = _error(_post(server, _body(tools=_tool(schema))), 400)
    assert err["param"] == "tools[0].function.parameters" and bad in err["message"], err["message"]


def test_valid_nested_tool_schema_is_accepted(server):
    schema = {
        "type": "object",
        "properties": {
            "x": {"type": ["string", "null"]},
            "y": {"type": "array", "items": {"type": "object", "properties": {"z": {"type": "integer"}}}},
            "w": {"anyOf": [{"type": "number"}, {"type": "boolean"}], "additionalProperties": False},
        },
        "required": ["x"],
    }
    assert _post(server, _body(tools=_tool(schema))).status_code == 200


def _convo(*tail: dict) -> list[dict]:
    return [
        {"role": "user", "content": "What is 1?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        *tail,
    ]


@pytest.mark.parametrize(
    "messages,index,says",
    [
        (_convo({"role": "tool", "tool_call_id": "call_9", "content": "1"}), 2, "tool_call_id 'call_9'"),
        (_convo({"role": "tool", "tool_call_id": 7, "content": "1"}), 2, "must be a non-empty string"),
        (
            [{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "1"}],
            1,
            "it has no unanswered call",
        ),
        ([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "1"}], 1, "answers no call"),
        (  # one call, two results
            _convo({"role": "tool", "content": "1"}, {"role": "tool", "content": "1"}),
            3,
            "answers no call",
        ),
        (  # a tool message must follow its call directly (OpenAI's rule)
            _convo(
                {"role": "tool", "tool_call_id": "call_1", "content": "1"},
                {"role": "user", "content": "and?"},
                {"role": "tool", "tool_call_id": "call_1", "content": "1"},
            ),
            4,
            "tool_call_id 'call_1'",
        ),
    ],
)
def test_a_tool_message_must_answer_a_call_before_it(server, messages, index, says):
    err = _error(_post(server, _body(messages=messages)), 400)
    assert err["param"] == f"messages[{index}].tool_call_id" and says in err["message"], err["message"]


def test_tool_results_answering_their_calls_are_accepted(server):
    two = {**CALL, "id": "call_2"}
    by_id = [
        {"role": "user", "content": "What is 1 and 2?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL, two]},
        {"role": "tool", "tool_call_id": "call_2", "content": "2"},
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
    ]
    assert _post(server, _body(messages=by_id, tools=Engine.default_tools())).status_code == 200
    no_ids = [  # a client that sends no ids: each result answers the next call
        {"role": "user", "content": "What is 1?"},
        {"role": "assistant", "content": "", "tool_calls": [{k: v for k, v in CALL.items() if k != "id"}]},
        {"role": "tool", "content": "1"},
    ]
    assert _post(server, _body(messages=no_ids, tools=Engine.default_tools())).status_code == 200


# ----------------------------------------------------------------------------- fuzzing from the OpenAPI schema


def test_openapi_schema_describes_the_chat_route_and_the_served_model(server):
    from steerlab.serve.openapi import HARMLESS_TYPES
    from steerlab.serve.protocol import HARMLESS, SUPPORTED

    doc = httpx.get(server.replace("/v1", "/openapi.json")).json()
    op = doc["paths"]["/v1/chat/completions"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["model"]["enum"] == [MODEL]
    assert body["properties"]["max_tokens"]["maximum"] == 6  # the server's --max-tokens-limit
    assert set(body["properties"]) == SUPPORTED | HARMLESS and set(HARMLESS_TYPES) == HARMLESS
    assert {"200", "400", "404", "413", "415", "503"} <= set(op["responses"])


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzz_chat_api_from_its_openapi_schema(server, mode):
    """Bodies drawn from the server's own schema (positive: valid by the schema; negative: violating it), sent
    over loopback: no 5xx, every 4xx in OpenAI's error shape, every 200 a chat completion or an SSE stream."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings

    root = server.removesuffix("/v1")
    schema = schemathesis.openapi.from_url(f"{root}/openapi.json")
    op = schema["/v1/chat/completions"]["POST"]
    seen: dict[int, int] = {}

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(schemathesis.GenerationMode(mode)))
    def check(case) -> None:  # noqa: ANN001
        r = case.call(base_url=root, timeout=60)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (case.body, r.text)
        if r.status_code >= 400:
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)
            assert err["type"] == "invalid_request_error" and "Traceback" not in r.text
        elif r.headers["content-type"][0].startswith("text/event-stream"):  # schemathesis: lists
            assert r.text.rstrip().endswith("data: [DONE]")
        else:
            out = r.json()
            assert out["object"] == "chat.completion" and out["model"] == MODEL and len(out["choices"]) == 1

    check()
    # valid by the schema, many bodies reach the model (the rest break rules a schema cannot say)
    if mode == "positive":
        assert seen.get(200, 0) > 0, seen
