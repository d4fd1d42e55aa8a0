"""A bounded load test of a running server: many requests from concurrent clients, nothing may be lost.

Bounded in count and in time (it stops by itself); meant for loopback. Reports how many requests were sent,
answered 200, answered with an error, or lost (no answer at all), the latency distribution, and a memory series
sampled by a caller-given function (e.g. the server's resident set size).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/<pid>/status")


def _complete(r: object) -> bool:
    """A whole answer: a completion with choices, or an event stream that ends with [DONE]."""
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        return r.text.rstrip().endswith("data: [DONE]")
    try:
        return bool(r.json().get("choices"))
    except ValueError:
        return False


def run_load(
    base_url: str,
    bodies: list[dict],
    n: int,
    concurrency: int,
    time_limit_s: float = 600.0,
    sample_every: int = 250,
    memory: Callable[[], float] | None = None,
) -> dict:
    """Send ``n`` requests (cycling through ``bodies``) from ``concurrency`` threads; stops early at the time
    limit. ``lost`` counts requests that got no HTTP answer (connection errors, timeouts)."""
    import httpx

    if n < 1 or concurrency < 1:
        raise ValueError(f"n and concurrency must be >= 1, got {n} and {concurrency}")
    url = f"{base_url}/chat/completions"
    lock = threading.Lock()
    counts = {"sent": 0, "ok": 0, "error_status": 0, "lost": 0, "bad_body": 0}
    lat: list[float] = []
    mem: list[tuple[int, float]] = [(0, memory())] if memory else []
    t_end = time.monotonic() + time_limit_s
    next_i = iter(range(n))

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < t_end:
                with lock:
                    i = next(next_i, None)
                    if i is None:
                        return
                    counts["sent"] += 1
                t0 = time.perf_counter()
                try:
                    r = client.post(url, json=bodies[i % len(bodies)])
                except httpx.HTTPError:
                    with lock:
                        counts["lost"] += 1
                    continue
                dt = time.perf_counter() - t0
                good = r.status_code == 200 and _complete(r)
                with lock:
                    lat.append(dt)
                    key = "ok" if good else "error_status" if r.status_code != 200 else "bad_body"
                    counts[key] += 1
                    done = counts["ok"] + counts["error_status"] + counts["bad_body"] + counts["lost"]
                    if memory and done % sample_every == 0:
                        mem.append((done, memory()))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - t0
    if memory:
        mem.append((counts["sent"], memory()))
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float("nan")] * 19
    return {
        **counts,
        "requested": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "requests_per_s": counts["ok"] / wall if wall else 0.0,
        "latency_p50_s": statistics.median(lat) if lat else float("nan"),
        "latency_p95_s": q[18],
        "memory_mb": mem,
        "stopped_by_time": counts["sent"] < n,
    }
