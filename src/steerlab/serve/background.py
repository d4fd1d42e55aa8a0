"""Run the app with uvicorn in a background thread on a loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A bound socket on a free port, handed to uvicorn so that no other process can take the port meanwhile."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    return s


@contextlib.contextmanager
def serve_in_thread(app, wait_ready: bool = True, timeout: float = 300.0) -> Iterator[str]:  # noqa: ANN001
    """Serve ``app`` on a free loopback port; yields the OpenAI base URL (``http://127.0.0.1:PORT/v1``).

    ``wait_ready`` waits until /health no longer says "loading" (the model is loaded or failed)."""
    import httpx
    import uvicorn

    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                r = httpx.get(f"{base}/health", timeout=5)
                if not wait_ready or r.json()["status"] != "loading":
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not th.is_alive():
                raise TimeoutError(f"the server on port {port} did not come up within {timeout} s")
            time.sleep(0.05)
        yield f"{base}/v1"
    finally:
        server.should_exit = True
        th.join(timeout=30)
        sock.close()
