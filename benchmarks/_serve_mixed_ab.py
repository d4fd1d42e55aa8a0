"""An A/B driver for ``bench_serve.py``'s mixed-lengths arm: the plain server on the embedded model, 8 concurrent
clients vs one at a time, ``max_tokens`` alternating 48 and 6 (and 8 clients at a uniform 24 for reference).

To compare two versions of the server, run it with ``PYTHONPATH`` set to each checkout's ``src`` in turn,
interleaved, on the same machine, e.g. ``git worktree add /tmp/old b312d17~1`` then
``for v in old new old new; do PYTHONPATH=$([ $v = old ] && echo /tmp/old/src || echo src) .venv/bin/python
benchmarks/_serve_mixed_ab.py $v; done``. Prints each arm's wall time and rows per decode step, and the ratio.
(Not a smoke-tested script: it needs the embedded model.)
"""

from __future__ import annotations

import sys

import bench_serve as B
from _common import load_bench_model, prompts

from steerlab.serve.app import ServeConfig, create_app
from steerlab.serve.background import serve_in_thread
from steerlab.serve.engine import Engine


def main() -> None:
    lm = load_bench_model("smollm2-135m")
    engine = Engine(lm)
    tools = Engine.default_tools()
    ps = prompts(16)
    mix = [6 if i % 2 else 48 for i in range(len(ps))]
    out = {}
    with serve_in_thread(create_app(lambda: engine, ServeConfig(window_ms=40, max_batch=8))) as base:
        B._run(base, ps[:2], 1, 2, tools)  # warm-up
        for name, clients, mt in (("uniform24_8", 8, 24), ("mixed_8", 8, mix), ("mixed_1", 1, mix)):
            r = B._run(base, ps, clients, mt, tools)
            out[name] = {"wall_s": round(r["wall_s"], 2), "rows_per_step": round(r["mean_batch_rows"], 2)}
    label = sys.argv[1] if len(sys.argv) > 1 else "this checkout"
    ratio = out["mixed_1"]["wall_s"] / out["mixed_8"]["wall_s"]
    print(label, out, f"mixed lengths, 8 clients vs 1: {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
