"""Greedy generation of 64 tokens with a ``generated`` steering handle active vs none.

Target: <= 3% overhead. Both arms run inside ``model.generate`` (the path users take) and interleave to share
the machine's noise. Run: ``.venv/bin/python benchmarks/bench_steering_overhead.py [--model smollm2-135m]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import TINY, load_bench_model, parse_args, prompts, write_result

from steerlab.models import left_pad, render_prompts, tokenize_texts
from steerlab.steering import steer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    args = parse_args(ap, model=TINY, batch=2, tokens=2, rounds=1)
    lm = load_bench_model(args.model)
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts(args.batch), chat=True))
    input_ids, mask = left_pad(ids, lm.tokenizer.pad_token_id, lm.device)
    v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    v = v / v.norm()

    def run() -> float:
        t = time.perf_counter()
        with torch.no_grad():
            lm.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    run()
    plain, steered = [], []
    for _ in range(args.rounds):
        plain.append(run())
        with steer(lm, v, layer=lm.n_layers // 2, coef=1.0, policy="generated"):
            steered.append(run())
    p, s = statistics.median(plain), statistics.median(steered)
    write_result(
        "steering_overhead",
        {
            "what": f"greedy generate, batch {args.batch}, {args.tokens} new tokens, {args.model}",
            "device": str(lm.device),
            "plain_s": p,
            "steered_s": s,
            "overhead": s / p - 1,
            "target": "<= 0.03",
        },
        args,
    )


if __name__ == "__main__":
    main()
