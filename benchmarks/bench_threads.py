"""Generation under a concurrent CPU load: torch's default intra-op threads vs the count steerlab chooses.

The machine runs ``--load`` busy processes (pure-Python spin loops, one core each) for the whole benchmark, as any
other program a user runs beside steerlab would. Two arms generate the same ``--tokens`` greedy tokens for the same
chat prompt (batch 1, the embedded model) in one process, alternating round by round: ``default`` with torch's own
thread count (one per logical core, what torch starts with) and ``steerlab`` with ``steerlab.threads.choose()``
(measured while the load runs: the cores not busy, at most the physical ones). The ratio is default / steerlab.
The machine may be shared with other jobs besides the benchmark's own load: their share is in the result
(``busy_cores`` seen by the choice, the load average before and after).
Run: ``.venv/bin/python benchmarks/bench_threads.py [--load 1 --tokens 20 --rounds 3]`` (no OMP_NUM_THREADS: the
default arm must see torch's own default).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import torch
from _common import TINY, interleaved, load_bench_model, parse_args, write_result

from steerlab import threads
from steerlab.generation import generate


def _spin(stop: mp.Event) -> None:  # noqa: ANN001
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--load", type=int, default=1, help="busy processes started beside the benchmark")
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = parse_args(ap, model=TINY, tokens=3, rounds=1)
    for var in threads.ENV_VARS:
        if os.environ.get(var) and not args.smoke:  # a smoke run only checks the script works
            raise SystemExit(f"unset {var}: the default arm must run with torch's own default thread count")
    default_threads = torch.get_num_threads()
    lm = load_bench_model(args.model)
    prompt = [[{"role": "user", "content": "Write two sentences about the sea."}]]
    load_before = os.getloadavg()
    stop = mp.Event()
    procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)  # let the load settle before the choice measures it
        choice = threads.choose(window=0.5)
        outs: dict[str, list[int]] = {}

        def arm(name: str, n: int):  # noqa: ANN202
            def run() -> None:
                torch.set_num_threads(n)
                g = generate(lm, prompt, max_new_tokens=args.tokens, progress=False)[0]
                outs[name] = g.token_ids

            return run

        times = interleaved(
            {"default": arm("default", default_threads), "steerlab": arm("steerlab", choice.threads)},
            rounds=args.rounds,
        )
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
    assert outs["default"] == outs["steerlab"], "the thread count changed the greedy tokens"
    result = {
        "what": f"greedy generation of {args.tokens} tokens, batch 1, {args.model}, with {args.load} busy "
        "process(es) beside it: torch's default threads vs steerlab's choice",
        "model": args.model,
        "device": "cpu",
        "load_processes": args.load,
        "default_threads": default_threads,
        "steerlab_choice": choice.as_dict(),
        "seconds_default": round(times["default"], 3),
        "seconds_steerlab": round(times["steerlab"], 3),
        "ratio_default_over_steerlab": round(times["default"] / times["steerlab"], 2),
        "rounds": args.rounds,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": f"bench_threads.py --model {args.model} --load {args.load} --tokens {args.tokens} --rounds {args.rounds}",
    }
    write_result("threads_under_load", result, args)


if __name__ == "__main__":
    main()
