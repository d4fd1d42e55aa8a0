"""``steerlab ui``: the local web app (baseline vs ASA side by side, steering-vector lab)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..cli_args import add_config_args, config_from_args
from ..config import opt
from ..serve.cli import PORT, EngineConfig


@dataclass
class UiConfig(EngineConfig):
    """``steerlab ui``: the engine, its own port, and whether a browser tab opens."""

    WHAT = "UI config"

    port: int = opt(7860, "TCP port (1-65535)", arg_type=PORT)
    no_browser: bool = opt(False, "do not open a browser tab")


def _cmd_ui(args: argparse.Namespace) -> int:
    from ..serve.cli import need

    cfg = config_from_args(UiConfig, args)
    need("gradio", extra="ui")
    from ..serve.cli import listen_socket
    from .app import launch

    listen_socket(cfg.host, cfg.port).close()  # a busy port fails now, not after the model has loaded
    print("steerlab ui: loading the model ...", flush=True)
    engine = cfg.load_engine()
    _, url = launch(engine, cfg.host, cfg.port, open_browser=not cfg.no_browser, block=False)
    print(f"steerlab ui: {url} (Ctrl-C to stop)", flush=True)
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="local web app: baseline vs ASA replies, gate, parsed calls, vector lab")
    add_config_args(p, UiConfig)
    p.set_defaults(func=_cmd_ui)
