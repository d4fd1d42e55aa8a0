"""MCQ letter scoring throughput: steerlab batched vs one prompt at a time (the PAS reference's way).

Also the cost of a layer x strength sweep: one token per configuration (steerlab) vs a full forward per
configuration and item. Target: >= 4x for plain scoring. And the limit: a bare batched forward over the same
padded batches (tokenized and padded beforehand, logits of the last position only, the same letter reduction):
steerlab's scoring must be within 1.15x of it. ``--profile`` writes torch.profiler tables of both;
``--limit-only`` times only steerlab vs the bare forward.
Run: ``.venv/bin/python benchmarks/bench_mcq_scoring.py``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import (
    TINY,
    interleaved,
    load_bench_model,
    padded_batches,
    parse_args,
    profile_top,
    sync,
    timeit,
    write_result,
)

from steerlab.models import render_prompts, tokenize_texts
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


def bare(lm, items, batches, toks) -> np.ndarray:  # noqa: ANN001
    """One forward per padded batch (last position's logits only), the letters' log-probabilities, argmax."""
    preds = np.zeros(len(items), dtype=int)
    n_max = len(toks)
    with torch.inference_mode():
        for batch, kw in batches:
            logp = torch.log_softmax(
                lm.model(**kw, use_cache=False, logits_to_keep=1).logits[:, -1].float(), -1
            )
            s = torch.stack([torch.logsumexp(logp[:, list(t)], -1) for t in toks], -1).cpu()
            mask = torch.tensor([[j < len(items[i].choices) for j in range(n_max)] for i in batch])
            preds[batch] = s.masked_fill(~mask, float("-inf")).argmax(-1).numpy()
    sync(lm)
    return preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--profile", action="store_true", help="torch.profiler tables of steerlab and the bare forward"
    )
    ap.add_argument(
        "--limit-only",
        action="store_true",
        help="time only steerlab vs the bare forward (the one-at-a-time loop still checks the predictions)",
    )
    args = parse_args(ap, model=TINY, n=8, repeat=1, batch_size=4)
    lm = load_bench_model(args.model)
    items = [shuffle_options(it, 0) for it in load_builtin_mcq()[: args.n]]
    toks = letter_tokens(lm.tokenizer, 5)
    bs = args.batch_size
    ours = score(lm, items, {"base": None}, batch_size=bs)["base"]
    agree = float((ours == naive(lm, items, toks)).mean())
    assert agree >= 0.99, f"batched predictions differ from one at a time on {1 - agree:.1%} of items"
    ids = tokenize_texts(
        lm.tokenizer, render_prompts(lm.tokenizer, [format_mcq_prompt(it) for it in items], chat=False)
    )
    batches = padded_batches(lm, ids, bs)
    n_toks = len(toks[: max(len(it.choices) for it in items)])
    assert np.array_equal(bare(lm, items, batches, toks[:n_toks]), ours), (
        "the bare forward predicts otherwise"
    )
    t_naive = None if args.limit_only else timeit(lambda: naive(lm, items, toks), repeat=args.repeat)
    t = interleaved(
        {
            "bare": lambda: bare(lm, items, batches, toks[:n_toks]),
            "ours": lambda: score(lm, items, {"base": None}, batch_size=bs),
        },
        rounds=args.repeat,
    )
    t_ours, t_bare = t["ours"], t["bare"]
    if args.profile:
        name = f"mcq_scoring_{lm.device.type}_{args.model}"
        res = args.out
        profile_top(
            lambda: score(lm, items, {"base": None}, batch_size=bs), res / f"{name}_profile_steerlab.txt"
        )
        profile_top(lambda: bare(lm, items, batches, toks[:n_toks]), res / f"{name}_profile_bare.txt")
    result = {
        "what": f"{args.n} MCQ items, letter scoring, {args.model}",
        "device": str(lm.device),
        "agreement_with_one_at_a_time": agree,
        "steerlab_batched_s": t_ours,
        "bare_batched_forward_s": t_bare,
        "steerlab_vs_bare": t_ours / t_bare,
        "limit_target": "<= 1.15",
        "batch_size": bs,
        "rounds": args.repeat,
    }
    if t_naive is not None:
        v = torch.randn(lm.hidden_size)
        v = v / v.norm()
        conds = {
            f"{k}|{s}": (lambda idx, k=k, s=s: steer(lm, v, layer=k, coef=s))
            for k in (10, 15, 20)
            for s in (1, 2, 4)
        }
        t_sweep = timeit(lambda: score(lm, items, conds, batch_size=bs), repeat=1, warmup=0)
        result |= {
            "one_at_a_time_s": t_naive,
            "speedup": t_naive / t_ours,
            "target": ">= 4x",
            "sweep_9_configs_s": t_sweep,
            "sweep_9_configs_naive_estimate_s": 9 * t_naive,
            "sweep_speedup_vs_naive": 9 * t_naive / t_sweep,
        }
    write_result(f"mcq_scoring_{args.model}", result, args)


if __name__ == "__main__":
    main()
