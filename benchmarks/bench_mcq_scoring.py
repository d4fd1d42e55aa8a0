"""MCQ letter scoring throughput: steerlab batched vs one prompt at a time (the PAS reference's way).

Also the cost of a layer x strength sweep: one token per configuration (steerlab) vs a full forward per
configuration and item. Target: >= 4x for plain scoring. Run: ``.venv/bin/python benchmarks/bench_mcq_scoring.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import load_bench_model, timeit, write_result

from steerlab.pas.mcq import format_mcq_prompt, letter_tokens, load_builtin_mcq, shuffle_options
from steerlab.pas.stages import score
from steerlab.steering import steer


def naive(lm, items, toks) -> np.ndarray:  # noqa: ANN001
    preds = []
    with torch.no_grad():
        for it in items:
            ids = lm.tokenizer(format_mcq_prompt(it), return_tensors="pt").to(lm.device)
            logp = torch.log_softmax(lm.model(**ids).logits[0, -1].float(), -1)
            s = torch.stack([torch.logsumexp(logp[t], 0) for t in toks[: len(it.choices)]])
            preds.append(int(s.argmax()))
    return np.array(preds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lm = load_bench_model(args.model)
    items = [shuffle_options(it, 0) for it in load_builtin_mcq()[: args.n]]
    toks = letter_tokens(lm.tokenizer, 5)
    ours = score(lm, items, {"base": None}, batch_size=32)["base"]
    agree = float((ours == naive(lm, items, toks)).mean())
    assert agree >= 0.99, f"batched predictions differ from one at a time on {1 - agree:.1%} of items"
    t_naive = timeit(lambda: naive(lm, items, toks), repeat=args.repeat)
    t_ours = timeit(lambda: score(lm, items, {"base": None}, batch_size=32), repeat=args.repeat)
    v = torch.randn(lm.hidden_size)
    v = v / v.norm()
    conds = {
        f"{k}|{s}": (lambda idx, k=k, s=s: steer(lm, v, layer=k, coef=s))
        for k in (10, 15, 20)
        for s in (1, 2, 4)
    }
    t_sweep = timeit(lambda: score(lm, items, conds, batch_size=32), repeat=1, warmup=0)
    write_result(
        "mcq_scoring",
        {
            "what": f"{args.n} MCQ items, letter scoring, {args.model}",
            "device": str(lm.device),
            "agreement_with_one_at_a_time": agree,
            "one_at_a_time_s": t_naive,
            "steerlab_batched_s": t_ours,
            "speedup": t_naive / t_ours,
            "target": ">= 4x",
            "sweep_9_configs_s": t_sweep,
            "sweep_9_configs_naive_estimate_s": 9 * t_naive,
            "sweep_speedup_vs_naive": 9 * t_naive / t_sweep,
        },
    )


if __name__ == "__main__":
    main()
