"""A/B of the evaluate stage's decode pool, on one finished run, in one process.

``--arm pool-count``: the pool's count of the cache slots its rows may come to hold. The default counts every row at
the longest room any of them has left; the other counts the peak over the coming steps (after s steps only the rows
with room for s more tokens remain, at width + s), so more short rows fit beside a few long ones. (An arm ``copies``,
row drops and joins written into buffers with room, was measured at commit 29824a9 and reverted: docs/limits.md.)

The arms alternate (old, new, then new, old, ...) on a copy of the run (``--run``); each prints the stage's CPU
seconds, its decode steps and its peak resident memory (the runner resets the high-water mark before each stage where
Linux allows; memory the heap kept from an earlier arm can still count). Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ab_evaluate_stage.py
--run runs/asa-smollm2-135m --arm pool-count --rounds 2``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _common import asa_run_copy, first_test_rows, parse_args, write_result

from steerlab.generation import decode


def _count_the_peak_over_the_coming_steps(self: decode.Decoder) -> int:
    width = int(self.mask.shape[1])
    rooms = sorted(
        (self.rules.max_new[self.index[b]] - len(self.gen[b]) for b in self.live if self.stopped[b] is None),
        reverse=True,
    )
    return max([len(self.live) * width] + [(k + 1) * (width + r) for k, r in enumerate(rooms)])


def arms(which: str) -> dict:
    """name -> a function that puts that arm in place (the default, steerlab's own count, first)."""
    if which != "pool-count":
        raise ValueError(f"unknown arm {which!r}; known: pool-count")
    default = decode.Decoder.live_tokens
    return {
        "every row at the longest room": lambda: setattr(decode.Decoder, "live_tokens", default),
        "the peak over the coming steps": lambda: setattr(
            decode.Decoder, "live_tokens", _count_the_peak_over_the_coming_steps
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--run", default=None, help="a finished ASA run directory (--smoke: a tiny one it builds)"
    )
    ap.add_argument("--preset", default="default", choices=["default", "full"])
    ap.add_argument("--arm", choices=["pool-count"], default="pool-count")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--test-rows", type=int, default=128)
    args = parse_args(ap, test_rows=4, rounds=1)
    setups = arms(args.arm)
    names = list(setups)
    steps = [0]
    real_step = decode.Decoder.step  # the pool's steps (a decoder decoding alone runs its own loop)
    real_count = decode.Decoder.live_tokens

    def counted(self):  # noqa: ANN001, ANN202
        steps[0] += 1
        return real_step(self)

    decode.Decoder.step = counted
    runs: dict[str, list[dict]] = {n: [] for n in names}
    try:
        with asa_run_copy(ap, args, "ab-evaluate-") as (src, r), first_test_rows(args.test_rows):
            r.model()
            for i in range(args.rounds):
                for name in names if i % 2 == 0 else names[::-1]:
                    setups[name]()
                    steps[0] = 0
                    t = time.process_time()
                    r.run("evaluate", force=True)
                    cpu = time.process_time() - t
                    peak = json.loads((r.path("evaluate") / "_DONE.json").read_text()).get("peak_rss_mb")
                    runs[name].append(
                        {"cpu_seconds": round(cpu, 2), "decode_steps": steps[0], "peak_rss_mb": peak}
                    )
                    print(name, runs[name][-1], flush=True)
    finally:
        decode.Decoder.step = real_step
        decode.Decoder.live_tokens = real_count
    result = {
        "what": f"evaluate stage A/B ({args.arm}) on {args.test_rows} TEST rows of {src}",
        "arms": runs,
        "median_cpu_seconds": {
            n: round(statistics.median(x["cpu_seconds"] for x in v), 2) for n, v in runs.items()
        },
        "command": f"ab_evaluate_stage.py --run {src} --arm {args.arm} --rounds {args.rounds} "
        f"--test-rows {args.test_rows}",
    }
    write_result(f"ab_evaluate_{args.arm.replace('-', '_')}", result, args)


if __name__ == "__main__":
    main()
