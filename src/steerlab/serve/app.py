"""The OpenAI-compatible HTTP app (FastAPI): /v1/models, /v1/chat/completions (JSON or server-sent events), /health.

The model loads in a background thread when the app starts; until it is ready every model route answers 503 with
``Retry-After``. Errors are OpenAI-shaped JSON with the matching status and never carry a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import Batcher
from .engine import Engine, RowOutput
from .errors import ApiError
from .openapi import chat_operation
from .protocol import parse_json_body, parse_request
from .reply import StreamSplitter, completion, finish_reason, new_id, split_reply, steerlab_field, usage

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Server limits and batching; defaults suit a CPU box (``steerlab serve --help`` lists them)."""

    window_ms: float = 40.0
    max_batch: int = 8
    max_body_bytes: int = 1_000_000
    max_tokens_limit: int = 1024
    default_temperature: float = 0.0


class _State:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.batcher: Batcher | None = None
        self.error: str | None = None
        self.ready = threading.Event()


def error_response(err: ApiError) -> JSONResponse:
    headers = {"Retry-After": "2"} if err.status == 503 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def create_app(
    load: Callable[[], Engine],
    config: ServeConfig | None = None,
    on_load_error: Callable[[str], None] | None = None,
) -> FastAPI:
    """An app that builds its engine with ``load()`` in a background thread (503 until it is ready).

    When loading fails, ``on_load_error(message)`` is called (``steerlab serve`` stops the server and exits with
    code 2); without it the error is logged and every request answers 503 ``model_load_failed``."""
    cfg = config or ServeConfig()
    st = _State()

    def loader() -> None:
        try:
            eng = load()
            b = Batcher(eng, window_s=cfg.window_ms / 1000, max_batch=cfg.max_batch)
            b.start()
            st.engine, st.batcher = eng, b
        except Exception as err:  # noqa: BLE001 - reported, not a crash of the server thread
            st.error = f"{type(err).__name__}: {err}"
            if on_load_error is not None:
                on_load_error(st.error)
            else:
                log.exception("model loading failed")
        finally:
            st.ready.set()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=loader, name="steerlab-loader", daemon=True).start()
        yield
        if st.batcher is not None:
            st.batcher.close()

    app = FastAPI(title="steerlab serve", lifespan=lifespan, docs_url=None, redoc_url=None)

    def openapi() -> dict:
        """FastAPI's description plus the chat route's request and responses, with the loaded model's id."""
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        ids = [st.engine.model_id] if st.engine is not None else None
        schema["paths"]["/v1/chat/completions"]["post"].update(chat_operation(ids, cfg.max_tokens_limit))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    def ready_engine() -> tuple[Engine, Batcher]:
        if st.error is not None:
            raise ApiError(503, f"the model failed to load: {st.error}", None, "model_load_failed")
        if st.engine is None or st.batcher is None:
            raise ApiError(503, "the model is still loading; retry shortly", None, "model_loading")
        return st.engine, st.batcher

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, err: ApiError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, err: StarletteHTTPException) -> JSONResponse:
        msg = {
            404: "unknown route; this server has GET /v1/models and POST /v1/chat/completions",
            405: "method not allowed on this route",
        }.get(err.status_code, str(err.detail))
        return error_response(ApiError(err.status_code, msg, None, None))

    @app.exception_handler(Exception)
    async def _crash(_req: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(
            ApiError(500, "internal server error (see the server log)", None, "server_error")
        )

    @app.get("/health")
    async def health() -> dict:
        state = "failed" if st.error else "ready" if st.engine is not None else "loading"
        out: dict = {"status": state}
        if st.batcher is not None:
            out["batches"] = st.batcher.stats.to_dict()
        if st.error:
            out["error"] = st.error
        return out

    @app.get("/v1/models")
    async def models() -> dict:
        eng, _ = ready_engine()
        return {
            "object": "list",
            "data": [
                {
                    "id": eng.model_id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "steerlab",
                    "steerlab": eng.describe(),
                }
            ],
        }

    async def read_body(request: Request) -> object:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cfg.max_body_bytes:
            raise ApiError(
                413,
                f"request body of {declared} bytes exceeds the limit of {cfg.max_body_bytes} "
                "(--max-body-bytes)",
                None,
                "request_too_large",
            )
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > cfg.max_body_bytes:
                raise ApiError(
                    413,
                    f"request body exceeds the limit of {cfg.max_body_bytes} bytes (--max-body-bytes)",
                    None,
                    "request_too_large",
                )
        return parse_json_body(bytes(raw), request.headers.get("content-type"))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):  # noqa: ANN202
        body = await read_body(request)
        eng, batcher = ready_engine()
        req = parse_request(
            body,
            has_asset=eng.steerer is not None,
            max_tokens_limit=cfg.max_tokens_limit,
            default_temperature=cfg.default_temperature,
            model_ids=[eng.model_id],
        )
        ticket = batcher.submit(req.spec)
        parse = bool(req.spec.tools) and req.spec.tool_choice != "none"
        if not req.stream:
            while True:
                try:
                    kind, payload = await asyncio.wait_for(ticket.events.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():  # nobody will read the reply: stop decoding it
                        ticket.cancelled.set()
                        return Response(status_code=499)
                    continue
                if kind == "error":
                    return error_response(payload)
                if kind == "done":
                    return JSONResponse(completion(payload, eng.model_id, req.spec.tools, parse))
        kind, payload = await ticket.events.get()
        if kind == "error":
            return error_response(payload)
        return StreamingResponse(
            _sse(ticket, (kind, payload), eng, req.spec, parse, req.include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


async def _sse(
    ticket, first: tuple, eng: Engine, spec, parse: bool, include_usage: bool
) -> AsyncIterator[str]:  # noqa: ANN001
    """``chat.completion.chunk`` events, then ``data: [DONE]``; a client that disconnects cancels its row."""
    finished = False
    try:
        async for item in _chunks(ticket.events, first, eng, spec, parse, include_usage):
            yield item
        finished = True
    finally:
        if not finished:
            ticket.cancelled.set()


async def _chunks(
    events, first: tuple, eng: Engine, spec, parse: bool, include_usage: bool
) -> AsyncIterator[str]:  # noqa: ANN001
    cid, created = new_id("chatcmpl"), int(time.time())
    splitter = StreamSplitter(eng.call_format, spec.stop, parse)

    def chunk(delta: dict, finish: str | None = None, **extra: object) -> str:
        obj = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": eng.model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    kind, payload = first
    while True:
        if kind == "delta":
            text = splitter.feed(payload)
            if text:
                yield chunk({"content": text})
        elif kind == "error":
            err: ApiError = payload
            yield f"data: {json.dumps(err.body())}\n\n"
            break
        elif kind == "done":
            out: RowOutput = payload
            content, calls, report = split_reply(out.text, out, spec.tools, parse)
            rest = "" if calls else splitter.rest(content)
            if rest:
                yield chunk({"content": rest})
            if calls:
                yield chunk({"tool_calls": [{"index": k, **c} for k, c in enumerate(calls)]})
            yield chunk({}, finish_reason(out, calls), steerlab=steerlab_field(out, report))
            if include_usage:
                obj = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": eng.model_id,
                    "choices": [],
                    "usage": usage(out),
                }
                yield f"data: {json.dumps(obj)}\n\n"
            break
        kind, payload = await events.get()
    yield "data: [DONE]\n\n"
