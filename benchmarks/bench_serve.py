"""steerlab serve on loopback: N concurrent clients vs one request at a time, and ASA's cost per request.

Same process, same loaded model, real HTTP with the openai client. Throughput ratio = (requests/s with
``--clients`` concurrent clients) / (requests/s one at a time); ASA overhead = latency with the asset / latency of
the same server without it, at max_tokens=1 (prefill + gate: the part ASA adds to) and at ``--max-tokens``.
Tool prompt = latency of a request carrying a tool list of at least ``--tool-tokens`` tokens (the 4 ASA tools and
made-up ones), once the server holds that prefix's KV cache, / latency of the same request without tools.
The clients run in a process of their own (as an agent's would), so their HTTP and JSON work does not share the
server's interpreter lock; ``--clients-in-process`` runs them as threads of the server's process (how this script
measured before; a client's Python then competes with the batcher for the lock).
Packing gain = requests/s of the concurrent clients on the plain server / the same on a server that prefills every
late prompt in a forward of its own (``Engine.fuse_prompts = False``) instead of inside the running rows' next
decode step; ``--no-unpacked`` skips that arm.
Run: ``python benchmarks/bench_serve.py [--model smollm2-135m] [--asset DIR] [--n 32] [--clients 8]``; ``--smoke``
serves the tiny model with a tiny ASA asset built on the spot.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from _common import load_bench_model, parse_args, prompts, write_result


def big_tool_list(tokenizer, base: list[dict], min_tokens: int) -> tuple[list[dict], int]:
    """The given tools and made-up ones until their JSON is at least ``min_tokens`` tokens (an agent's tool list)."""
    import json

    tools = list(base)
    i = 0
    while len(tokenizer(json.dumps(tools))["input_ids"]) < min_tokens:
        i += 1
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"lookup_record_{i}",
                    "description": f"Look up record type {i} in the company database by its id and return it.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "record_id": {"type": "string", "description": "the record's id"},
                            "fields": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["record_id"],
                    },
                },
            }
        )
    return tools, len(tokenizer(json.dumps(tools))["input_ids"])


def run_clients(
    base: str, ps: list[str], clients: int, max_tokens: int | list[int], tools: list[dict]
) -> dict:
    import openai

    client = openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=600)
    model = client.models.list().data[0].id  # the server refuses other model names (404 model_not_found)

    lengths = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(ps)

    def one(p: str, n: int) -> tuple[float, int]:
        t = time.perf_counter()
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": p}],
            tools=tools or openai.NOT_GIVEN,
            max_tokens=n,
            temperature=0,
        )
        return time.perf_counter() - t, r.usage.completion_tokens

    before = _batches(base)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        res = list(pool.map(one, ps, lengths))
    wall = time.perf_counter() - t0
    after = _batches(base)
    lat = [r[0] for r in res]
    toks = sum(r[1] for r in res)
    return {
        "clients": clients,
        "requests": len(ps),
        "wall_s": wall,
        "requests_per_s": len(ps) / wall,
        "completion_tokens_per_s": toks / wall,
        "completion_tokens": toks,
        "latency_p50_s": statistics.median(lat),
        "latency_max_s": max(lat),
        # rows per batch the server ran for this arm (its /health counters): what batching caught
        "mean_batch_rows": (after["rows"] - before["rows"]) / max(1, after["batches"] - before["batches"]),
        # requests started per prefill of their own (continuous batching starts late arrivals between decode steps)
        "mean_admit_rows": (
            after.get("admitted", 0)
            - before.get("admitted", 0)
            - after.get("packed", 0)
            + before.get("packed", 0)
        )
        / max(1, after.get("admissions", 0) - before.get("admissions", 0)),
        # requests whose prompts went through the running rows' decode step (no forward of their own)
        "packed_rows": after.get("packed", 0) - before.get("packed", 0),
    }


def _batches(base: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(base.removesuffix("/v1") + "/health", timeout=30) as r:
        return json.loads(r.read())["batches"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m", help="a model spec, 'tiny' or random-smollm2-shape")
    ap.add_argument(
        "--asset", default=None, help="an ASA asset for --model (enables the overhead measurement)"
    )
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-tokens", dest="max_tokens", type=int, default=32)
    ap.add_argument(
        "--window-ms", dest="window_ms", type=float, default=None, help="default: the server's own default"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the median round is kept")
    ap.add_argument(
        "--tool-tokens",
        dest="tool_tokens",
        type=int,
        default=400,
        help="size of the tool-prompt arm's tool list",
    )
    ap.add_argument(
        "--mixed",
        action="store_true",
        help="also time the plain server on replies of mixed lengths (max_tokens alternating --max-tokens / 4 and "
        "2 x --max-tokens): what continuous batching is for",
    )
    ap.add_argument(
        "--no-unpacked",
        dest="no_unpacked",
        action="store_true",
        help="skip the arm that serves the concurrent clients with every late prompt prefilled on its own (the A/B "
        "for packing late prompts into the running rows' decode steps)",
    )
    ap.add_argument(
        "--clients-in-process",
        dest="clients_in_process",
        action="store_true",
        help="run the clients as threads of the server's process instead of a process of their own",
    )
    args = parse_args(ap, model="tiny", n=4, clients=2, max_tokens=2, rounds=1, tool_tokens=60, mixed=True)

    from steerlab import threads
    from steerlab.models import tiny_model
    from steerlab.serve.app import ServeConfig, create_app
    from steerlab.serve.background import serve_in_thread
    from steerlab.serve.engine import Engine

    choice = threads.apply()  # as `steerlab serve` does at start: the cores not busy with other work
    lm = tiny_model("llama") if args.model == "tiny" else load_bench_model(args.model)
    tools = Engine.default_tools()
    big_tools, n_tool_tokens = big_tool_list(lm.tokenizer, tools, args.tool_tokens)
    ps = prompts(args.n)
    if args.window_ms is None:
        args.window_ms = ServeConfig().window_ms
    cfg = ServeConfig(window_ms=args.window_ms, max_batch=args.clients)
    out: dict = {
        "what": f"{args.n} chat requests with the 4 ASA tools on {args.model}, max_tokens {args.max_tokens}",
        "device": str(lm.device),
        "window_ms": args.window_ms,
    }

    if args.smoke and args.asset is None and args.model == "tiny":  # so the smoke run covers the ASA arm too
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from serve_helpers import tiny_asset

        args.asset = tiny_asset(Path(tempfile.mkdtemp(prefix="bench-serve-asa-")), lm)
    engines = {"plain": Engine(lm)}
    if not args.no_unpacked:  # the A/B for packing late prompts into the running rows' steps
        engines["unpacked"] = Engine(lm)
        engines["unpacked"].fuse_prompts = False
    if args.asset:
        engines["asa"] = Engine(lm, args.asset)
    runs: dict[str, list[dict]] = {}
    with contextlib.ExitStack() as stack:
        client_proc = None
        if not args.clients_in_process:  # one process for every client thread, started once
            client_proc = stack.enter_context(
                ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            )

        def _run(*a: object) -> dict:
            if client_proc is None:
                return run_clients(*a)
            return client_proc.submit(run_clients, *a).result()

        bases = {
            k: stack.enter_context(serve_in_thread(create_app(lambda e=e: e, cfg)))
            for k, e in engines.items()
        }
        for base in bases.values():
            _run(base, ps[:2], 1, 2, tools)  # warm-up
        for _ in range(args.rounds):  # interleaved, so that a busy neighbour slows both servers alike
            for tag, base in bases.items():
                for mode, clients, mt in (
                    ("one_at_a_time", 1, args.max_tokens),
                    ("concurrent", args.clients, args.max_tokens),
                    ("prefill_only", 1, 1),
                ):
                    if tag == "unpacked" and mode != "concurrent":
                        continue
                    runs.setdefault(f"{tag}_{mode}", []).append(_run(base, ps, clients, mt, tools))
            if args.mixed:
                mix = [max(1, args.max_tokens // 4) if i % 2 else 2 * args.max_tokens for i in range(len(ps))]
                for mode, clients in (("one_at_a_time", 1), ("concurrent", args.clients)):
                    runs.setdefault(f"plain_mixed_{mode}", []).append(
                        _run(bases["plain"], ps, clients, mix, tools)
                    )
            # the tool-prompt arm: the plain server, one request at a time, the big tool list's prefix cached
            _run(bases["plain"], ps[:1], 1, 1, big_tools)
            for mode, tl in (("with_tool_prompt", big_tools), ("without_tools", [])):
                runs.setdefault(f"plain_{mode}", []).append(_run(bases["plain"], ps, 1, args.max_tokens, tl))
    for key, rs in runs.items():  # the round with the median wall time
        out[key] = sorted(rs, key=lambda r: r["wall_s"])[len(rs) // 2]
    out["rounds"] = args.rounds
    out["threads"] = choice.as_dict()
    out["clients_run_in"] = "the server's process" if args.clients_in_process else "a process of their own"
    out["tool_prompt_tokens"] = n_tool_tokens
    out["tool_prompt_latency_ratio"] = (
        out["plain_with_tool_prompt"]["latency_p50_s"] / out["plain_without_tools"]["latency_p50_s"]
    )
    out["throughput_ratio_plain"] = (
        out["plain_concurrent"]["requests_per_s"] / out["plain_one_at_a_time"]["requests_per_s"]
    )
    if "unpacked_concurrent" in out:  # late prompts in the running rows' steps vs each its own forward
        out["packing_gain"] = (
            out["plain_concurrent"]["requests_per_s"] / out["unpacked_concurrent"]["requests_per_s"]
        )
    if args.mixed:
        out["throughput_ratio_plain_mixed"] = (
            out["plain_mixed_concurrent"]["requests_per_s"]
            / out["plain_mixed_one_at_a_time"]["requests_per_s"]
        )
    if args.asset:
        out["throughput_ratio_asa"] = (
            out["asa_concurrent"]["requests_per_s"] / out["asa_one_at_a_time"]["requests_per_s"]
        )
        out["asa_overhead_prefill_only"] = (
            out["asa_prefill_only"]["wall_s"] / out["plain_prefill_only"]["wall_s"]
        )
        out["asa_overhead_per_request"] = (
            out["asa_one_at_a_time"]["wall_s"] / out["plain_one_at_a_time"]["wall_s"]
        )
        out["asa_overhead_per_token"] = (
            out["asa_one_at_a_time"]["wall_s"] / out["asa_one_at_a_time"]["completion_tokens"]
        ) / (out["plain_one_at_a_time"]["wall_s"] / out["plain_one_at_a_time"]["completion_tokens"])
    write_result(f"serve_{args.model}", out, args)


if __name__ == "__main__":
    main()
