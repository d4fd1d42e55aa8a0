"""``steerlab ui``: the local web app (baseline vs ASA side by side, steering-vector lab)."""

from __future__ import annotations

import argparse


def _cmd_ui(args: argparse.Namespace) -> int:
    from ..serve.cli import need

    need("gradio", extra="ui")
    from ..serve.cli import listen_socket
    from ..serve.engine import Engine
    from .app import launch

    listen_socket(args.host, args.port).close()  # a busy port fails now, not after the model has loaded
    print("steerlab ui: loading the model ...", flush=True)
    engine = Engine.load(
        args.model,
        args.asset,
        device=args.device,
        dtype=args.dtype,
        call_format=args.call_format,
        few_shot=not args.no_few_shot,
        template_tools=args.template_tools,
    )
    _, url = launch(engine, args.host, args.port, open_browser=not args.no_browser, block=False)
    print(f"steerlab ui: {url} (Ctrl-C to stop)", flush=True)
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    from ..serve.cli import PORT, add_serve_args

    p = sub.add_parser("ui", help="local web app: baseline vs ASA replies, gate, parsed calls, vector lab")
    add_serve_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=PORT, default=7860, help="TCP port (1-65535)")
    p.add_argument("--no-browser", dest="no_browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=_cmd_ui)
