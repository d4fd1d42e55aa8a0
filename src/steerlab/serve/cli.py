"""``steerlab serve``: the OpenAI-compatible server with an optional ASA asset."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import math
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cli_args import add_config_args, config_from_args
from ..config import ModelConfig, UserError, check_range, opt

if TYPE_CHECKING:
    from .app import ServeConfig
    from .engine import Engine


def need(*modules: str, extra: str) -> None:
    """A clear error when an optional dependency is missing (instead of an ImportError traceback)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"{', '.join(missing)} not installed; install the extra: pip install 'steerlab[{extra}]'"
        )


def _positive(kind: type, lo: float = 1, hi: float | None = None) -> object:
    """An argparse type: a number of ``kind`` in [lo, hi]; a bad one is a one-line error naming it."""
    noun = {int: "an integer", float: "a number"}[kind]

    def conv(text: str) -> object:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"must be >= {lo}, got {v}" if hi is None else f"must be in {lo}..{hi}, got {v}"
            )
        return v

    return conv


PORT = _positive(int, 1, 65535)


@dataclass
class EngineConfig(ModelConfig):
    """What ``steerlab serve`` and ``steerlab ui`` load and where they listen."""

    WHAT = "server config"

    model: str | None = opt(
        None, "alias (smollm2-135m), .gguf, local dir, hub id or tiny[-family]; default: the asset's model"
    )
    asset: str | None = opt(None, "an ASA asset directory (from `steerlab asa run`)")
    call_format: str | None = opt(
        None, "tool-call format without an asset (default tool_call_json; with an asset: the asset's)"
    )
    no_few_shot: bool = opt(False, "without an asset: no few-shot turns before the conversation")
    template_tools: bool = opt(
        False, "without an asset: pass tools through the model's chat template (Qwen, LFM2, Llama 3)"
    )
    host: str = opt("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = opt(8000, "TCP port (1-65535)", arg_type=PORT)

    def validate(self) -> None:
        check_range("port", self.port, 1, 65535)

    def load_engine(self, **limits: Any) -> Engine:
        """The engine these fields describe (``limits``: the engine's own, e.g. ``max_prompt_tokens``)."""
        from .engine import Engine

        return Engine.load(
            self.model,
            self.asset,
            device=self.device,
            dtype=self.dtype,
            call_format=self.call_format,
            few_shot=not self.no_few_shot,
            template_tools=self.template_tools,
            **limits,
        )


@dataclass
class ServeCommandConfig(EngineConfig):
    """``steerlab serve``: the engine, plus how requests are batched and what they may ask."""

    WHAT = "serve config"

    window_ms: float = opt(
        40.0,
        "when nothing is decoding, collect requests arriving within this many ms before the first prefill (10 ms "
        "caught 3 of 8 clients that started together over HTTP; 40 ms caught all 8); while rows decode, waiting "
        "requests join them at the next step",
        arg_type=_positive(float, 0),
    )
    max_batch: int = opt(
        8, "most requests decoding at once (more wait for a row to finish)", arg_type=_positive(int)
    )
    max_body_bytes: int = opt(1_000_000, "requests with a larger body get 413", arg_type=_positive(int))
    max_prompt_tokens: int = opt(
        4096, "longer rendered prompts get 413 context_length_exceeded", arg_type=_positive(int)
    )
    max_tokens_limit: int = opt(1024, "largest max_tokens a request may ask for", arg_type=_positive(int))
    temperature: float = opt(
        0.0, "temperature for requests that do not set one (default: 0.0, greedy, as ASA was evaluated)"
    )

    def validate(self) -> None:
        super().validate()
        check_range("window_ms", self.window_ms, 0)
        for name in ("max_batch", "max_body_bytes", "max_prompt_tokens", "max_tokens_limit"):
            check_range(name, getattr(self, name), 1)
        if not 0 <= self.temperature <= 2:
            raise UserError(f"--temperature must be in [0, 2], got {self.temperature}")

    def limits(self) -> ServeConfig:
        """The app's limits and batching."""
        from .app import ServeConfig

        return ServeConfig(
            window_ms=self.window_ms,
            max_batch=self.max_batch,
            max_body_bytes=self.max_body_bytes,
            max_tokens_limit=self.max_tokens_limit,
            default_temperature=self.temperature,
        )


def listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says the server is up: a busy port, a privileged one or an
    address this machine does not have is one line naming it (exit 2), not tracebacks after the URL."""
    from ..config import UserError

    where = f"{host}:{port}"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as err:
        raise UserError(
            f"cannot listen on --host {host!r}: {getattr(err, 'strerror', None) or err}"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as err:
        sock.close()
        why = {
            errno.EADDRINUSE: f"port {port} is already in use on {host} (another server?); choose another --port",
            errno.EACCES: f"port {port} on {host} needs privileges this user lacks; choose a --port above 1023",
            errno.EADDRNOTAVAIL: f"--host {host} is not an address of this machine (try 127.0.0.1 or 0.0.0.0)",
        }.get(err.errno, f"cannot listen on {where}: {err.strerror or err}")
        raise UserError(why) from None
    return sock


def _cmd_serve(args: argparse.Namespace) -> int:
    cfg = config_from_args(ServeCommandConfig, args)
    need("fastapi", "uvicorn", extra="serve")
    import uvicorn

    from .. import threads
    from .app import create_app

    if cfg.asset is not None:
        from .engine import asset_model

        asset_model(cfg.asset)  # fail now on a path that is no asset, not in the loader thread

    def load() -> Engine:
        return cfg.load_engine(max_prompt_tokens=cfg.max_prompt_tokens)

    sock = listen_socket(cfg.host, cfg.port)
    failed: list[str] = []
    server: uvicorn.Server | None = None

    def on_load_error(message: str) -> None:
        # one line and exit 2, not a server that answers 503 forever
        failed.append(message)
        print(f"steerlab serve: the model or asset failed to load: {message}", file=sys.stderr, flush=True)
        if server is not None:
            server.should_exit = True

    app = create_app(load, cfg.limits(), on_load_error=on_load_error)
    server = uvicorn.Server(
        uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning" if args.quiet else "info")
    )
    print(
        f"steerlab serve: http://{cfg.host}:{cfg.port}/v1 (model loading in the background; 503 until ready; "
        f"{threads.apply().describe()})",
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 2 if failed else 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="OpenAI-compatible chat-completions server with per-request ASA steering"
    )
    add_config_args(p, ServeCommandConfig)
    p.add_argument("-q", "--quiet", action="store_true", help="no access log")
    p.set_defaults(func=_cmd_serve)
