"""Load test of steerlab serve on loopback: a few thousand requests, none may be lost, memory must stay flat.

Bounded in count (``--n``) and time (``--time-limit``). Memory is the server process's resident set size, sampled
every 250 answers (``--sample-every``); reported as the growth from the sample at 500 answers (``--settled``;
allocator warm-up: batch shapes vary) to the last one, in total and per request. The requests mix plain chat, tool
requests with ASA on and off, streamed and malformed ones (the latter must get 400s and the server must go on). Run: ``python benchmarks/load_serve.py [--model tiny] [--n 3000] [--clients 16]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import parse_args, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="tiny")
    ap.add_argument(
        "--asset", default=None, help="an ASA asset for --model; default: build a tiny one (tiny only)"
    )
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", dest="max_tokens", type=int, default=4)
    ap.add_argument("--time-limit", dest="time_limit", type=float, default=900.0)
    ap.add_argument("--warmup", type=int, default=100, help="requests sent before the measured ones")
    ap.add_argument(
        "--sample-every", dest="sample_every", type=int, default=250, help="answers per memory sample"
    )
    ap.add_argument(
        "--settled", type=int, default=500, help="answers after which memory counts as warmed up (allocator)"
    )
    args = parse_args(ap, n=40, clients=2, time_limit=120.0, warmup=10, sample_every=10, settled=20)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

    from serve_helpers import tiny_asset
    from steerlab.models import load_model, tiny_model
    from steerlab.serve.app import ServeConfig, create_app
    from steerlab.serve.background import serve_in_thread
    from steerlab.serve.engine import Engine
    from steerlab.serve.loadtest import rss_mb, run_load

    lm = tiny_model("llama") if args.model == "tiny" else load_model(args.model)
    asset = args.asset
    if asset is None and args.model == "tiny":
        import tempfile

        asset = tiny_asset(Path(tempfile.mkdtemp(prefix="load-asa-")), lm)
    tools = Engine.default_tools()
    msg = [{"role": "user", "content": "What is 12 times 7?"}]
    mt = args.max_tokens
    m = lm.name  # the server refuses other model names (404 model_not_found)
    bodies = [
        {"model": m, "messages": msg, "max_tokens": mt},
        {"model": m, "messages": msg, "tools": tools, "max_tokens": mt},
        {"model": m, "messages": msg, "tools": tools, "max_tokens": mt, "steerlab": {"asa": False}},
        {"model": m, "messages": msg, "tools": tools, "max_tokens": mt, "stream": True},
        {
            "model": m,
            "messages": msg,
            "tools": tools,
            "max_tokens": mt,
            "steerlab": {"alpha": 2.0, "tau": 0.8},
        },
    ]
    bad = [{"model": m, "messages": [{"role": "bot", "content": "x"}]}]
    with serve_in_thread(create_app(lambda: Engine(lm, asset), ServeConfig(max_batch=args.clients))) as base:
        run_load(
            base, bodies, args.warmup, args.clients, memory=lambda: rss_mb()
        )  # warm-up: caches, allocator
        res = run_load(
            base, bodies, args.n, args.clients, args.time_limit, args.sample_every, memory=lambda: rss_mb()
        )
        errs = run_load(base, bad, 50, 4)
    mem = [m for _, m in res["memory_mb"]]
    settled = next(m for k, m in res["memory_mb"] if k >= args.settled)
    out = {
        "what": f"{args.n} requests from {args.clients} clients, max_tokens {mt}, on {args.model} with an ASA asset",
        "device": str(lm.device),
        **{k: v for k, v in res.items() if k != "memory_mb"},
        "streamed_requests_counted_as": "ok when the SSE body arrived (status 200)",
        "memory_mb_series": res["memory_mb"],
        "memory_growth_mb_first_to_last": mem[-1] - mem[0],
        f"memory_growth_mb_after_{args.settled}": mem[-1] - settled,
        f"memory_kb_per_request_after_{args.settled}": 1024
        * (mem[-1] - settled)
        / max(1, res["sent"] - args.settled),
        "malformed_requests": {
            "sent": errs["sent"],
            "answered_400_or_other_error": errs["error_status"],
            "lost": errs["lost"],
        },
    }
    write_result("serve_load" if args.model == "tiny" else f"serve_load_{args.model}", out, args)


if __name__ == "__main__":
    main()
