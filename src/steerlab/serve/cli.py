"""``steerlab serve``: the OpenAI-compatible server with an optional ASA asset."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import math
import socket
import sys

from ..config import UserError


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
    need("fastapi", "uvicorn", extra="serve")
    import uvicorn

    from .. import threads
    from .app import ServeConfig, create_app
    from .engine import Engine

    if args.asset is not None:
        from .engine import asset_model

        asset_model(args.asset)  # fail now on a path that is no asset, not in the loader thread
    if not 0 <= args.temperature <= 2:
        raise UserError(f"--temperature must be in [0, 2], got {args.temperature}")
    cfg = ServeConfig(
        window_ms=args.window_ms,
        max_batch=args.max_batch,
        max_body_bytes=args.max_body_bytes,
        max_tokens_limit=args.max_tokens_limit,
        default_temperature=args.temperature,
    )

    def load() -> Engine:
        return Engine.load(
            args.model,
            args.asset,
            device=args.device,
            dtype=args.dtype,
            call_format=args.call_format,
            few_shot=not args.no_few_shot,
            template_tools=args.template_tools,
            max_prompt_tokens=args.max_prompt_tokens,
        )

    sock = listen_socket(args.host, args.port)
    failed: list[str] = []
    server: uvicorn.Server | None = None

    def on_load_error(message: str) -> None:
        # one line and exit 2, not a server that answers 503 forever
        failed.append(message)
        print(f"steerlab serve: the model or asset failed to load: {message}", file=sys.stderr, flush=True)
        if server is not None:
            server.should_exit = True

    app = create_app(load, cfg, on_load_error=on_load_error)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    )
    print(
        f"steerlab serve: http://{args.host}:{args.port}/v1 (model loading in the background; 503 until ready; "
        f"{threads.apply().describe()})",
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 2 if failed else 0


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="alias (smollm2-135m), .gguf, local dir, hub id or tiny[-family]; default: the asset's model",
    )
    p.add_argument("--asset", default=None, help="an ASA asset directory (from `steerlab asa run`)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    p.add_argument(
        "--call-format",
        dest="call_format",
        default=None,
        help="tool-call format without an asset (default tool_call_json; with an asset: the asset's)",
    )
    p.add_argument(
        "--no-few-shot",
        dest="no_few_shot",
        action="store_true",
        help="without an asset: no few-shot turns before the conversation",
    )
    p.add_argument(
        "--template-tools",
        dest="template_tools",
        action="store_true",
        help="without an asset: pass tools through the model's chat template (Qwen, LFM2, Llama 3)",
    )


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="OpenAI-compatible chat-completions server with per-request ASA steering"
    )
    add_serve_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=PORT, default=8000, help="TCP port (1-65535)")
    p.add_argument(
        "--window-ms",
        dest="window_ms",
        type=_positive(float, 0),
        default=10.0,
        help="collect requests arriving within this many ms into one batch",
    )
    p.add_argument(
        "--max-batch", dest="max_batch", type=_positive(int), default=8, help="most requests decoded together"
    )
    p.add_argument(
        "--max-body-bytes",
        dest="max_body_bytes",
        type=_positive(int),
        default=1_000_000,
        help="requests with a larger body get 413",
    )
    p.add_argument(
        "--max-prompt-tokens",
        dest="max_prompt_tokens",
        type=_positive(int),
        default=4096,
        help="longer rendered prompts get 413 context_length_exceeded",
    )
    p.add_argument(
        "--max-tokens-limit",
        dest="max_tokens_limit",
        type=_positive(int),
        default=1024,
        help="largest max_tokens a request may ask for",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="temperature for requests that do not set one (default: 0.0, greedy, as ASA was evaluated)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no access log")
    p.set_defaults(func=_cmd_serve)
