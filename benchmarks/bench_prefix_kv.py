"""A shared prompt prefix kept once in the KV cache vs copied into every row, on the embedded model.

The ASA prompts are a ~230-token shared prefix (system prompt, tools, few-shot turns) and a ~30-token row suffix.
Two arms, alternating round by round: ``copied`` (the prefix's cache copied into every row of the batch, the layout
before ``steerlab.models.prefix_attention``) and ``kept_once`` (the rows hold their own tokens, attention adds the
prefix from one copy, decode steps write the cache in place). Each arm: the batch's prefill after the prefix, then
``--steps`` decode steps. Reported: CPU seconds of each part (the machine is shared), the peak resident memory each
arm's caches add, and the largest difference of the last logits between the arms (float rounding only).
Run: ``.venv/bin/python benchmarks/bench_prefix_kv.py [--batch 64 --steps 8 --rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import TINY, load_bench_model, parse_args, write_result

import steerlab.models.prefix as px
from steerlab import threads
from steerlab.generation.prefill import prefill
from steerlab.models.hf_compat import cache_kwargs, output_cache
from steerlab.models.prefix import expand_cache, prefix_cache


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prefix", type=int, default=228)
    ap.add_argument("--suffix", type=int, default=30)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = parse_args(ap, model=TINY, batch=4, prefix=16, suffix=4, steps=2, rounds=1)
    threads.apply()
    lm = load_bench_model(args.model)
    g = torch.Generator().manual_seed(0)
    lo, hi = 10, min(1000, lm.model.config.vocab_size)  # ordinary tokens of any vocabulary

    def ids(*shape: int) -> torch.Tensor:
        return torch.randint(lo, hi, shape, generator=g)

    pre = ids(args.prefix).tolist()
    rows = [pre + ids(args.suffix).tolist() for _ in range(args.batch)]
    steps = ids(args.steps, args.batch, 1)
    real = px.cache_for_rows

    def arm(copied: bool) -> dict:
        if copied:
            px.cache_for_rows = lambda lm, c, n, keep=True: (expand_cache(c, n), c.get_seq_length())
        try:
            with torch.inference_mode():
                pc = prefix_cache(lm, pre)
                before = _rss_mb()
                t = time.process_time()
                out, mask, pos = prefill(lm, rows, args.prefix, pc)
                t_prefill = time.process_time() - t
                cache = output_cache(out)
                t = time.process_time()
                for s in range(args.steps):
                    mask = torch.cat([mask, torch.ones(args.batch, 1, dtype=torch.long)], 1)
                    out = lm.model(
                        input_ids=steps[s],
                        attention_mask=mask,
                        position_ids=pos + 1 + s,
                        use_cache=True,
                        logits_to_keep=1,
                        **cache_kwargs(lm.model, cache),
                    )
                    cache = output_cache(out)
                t_step = (time.process_time() - t) / args.steps
                grown = _rss_mb() - before
            return {"prefill": t_prefill, "step": t_step, "rss_growth_mb": grown, "logits": out.logits[:, -1]}
        finally:
            px.cache_for_rows = real

    res: dict[str, list[dict]] = {"copied": [], "kept_once": []}
    arm(True), arm(False)  # warm-up
    for _ in range(args.rounds):
        res["copied"].append(arm(True))
        res["kept_once"].append(arm(False))
    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("prefill", "step", "rss_growth_mb")}
        for k, v in res.items()
    }
    diff = float((res["copied"][-1]["logits"] - res["kept_once"][-1]["logits"]).abs().max())
    result = {
        "what": f"batch {args.batch}, shared prefix {args.prefix} + {args.suffix} row tokens, {args.steps} decode "
        f"steps, {args.model}: the prefix's cache copied into every row vs kept once",
        "model": args.model,
        "device": str(lm.device),
        "threads": torch.get_num_threads(),
        "cpu_seconds": {k: {m: round(v[m], 3) for m in ("prefill", "step")} for k, v in med.items()},
        "rss_growth_mb": {k: round(v["rss_growth_mb"], 1) for k, v in med.items()},
        "speedup_prefill": round(med["copied"]["prefill"] / med["kept_once"]["prefill"], 2),
        "speedup_decode_step": round(med["copied"]["step"] / med["kept_once"]["step"], 2),
        "max_abs_logit_difference": diff,
        "rounds": args.rounds,
        "command": f"bench_prefix_kv.py --model {args.model} --batch {args.batch} --steps {args.steps} --rounds {args.rounds}",
    }
    write_result("prefix_kv", result, args)


if __name__ == "__main__":
    main()
