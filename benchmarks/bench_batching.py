"""Two facts the ASA stages' batching rests on, each as a ratio measured in one run (arms interleaved).

1. Attention over a prompt chunk after a shared prefix: the split softmax (the prefix never copied; what decode
   steps use) vs one fused ``scaled_dot_product_attention`` over the prefix copied in front of each row for that
   call (what prompt chunks use). Shapes of the embedded model's attention (9 query heads, 3 key heads, head size
   64), ``--rows`` rows of ``--row-tokens`` own tokens after a ``--prefix``-token prefix, left padding.
2. One decode step of the model at several batch sizes after a ``--context``-token cache: seconds per step and
   tokens per second. Where a step of 64 rows costs little more than a step of 8, short prompts should decode in
   large batches (``batch_size``), and only long ones need a cap (``batch_tokens``: their cache fills memory).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_batching.py [--model smollm2-135m]``; ``--smoke`` runs
the tiny model with small shapes.
"""

from __future__ import annotations

import argparse

import torch
from _common import interleaved, load_bench_model, parse_args, write_result


def attention_arms(rows: int, row_tokens: int, prefix: int, seed: int = 0) -> dict:
    from steerlab.models.prefix_attention import prompt_attention, split_attention

    g = torch.Generator().manual_seed(seed)
    hq, hkv, d = 9, 3, 64
    q = torch.randn(rows, hq, row_tokens, d, generator=g)
    k, v = (
        torch.randn(rows, hkv, row_tokens, d, generator=g),
        torch.randn(rows, hkv, row_tokens, d, generator=g),
    )
    pk, pv = torch.randn(1, hkv, prefix, d, generator=g), torch.randn(1, hkv, prefix, d, generator=g)
    own = torch.randint(row_tokens // 3, row_tokens + 1, (rows,), generator=g)
    pad = torch.arange(row_tokens)[None, :] >= (row_tokens - own)[:, None]
    mask = (torch.ones(row_tokens, row_tokens, dtype=torch.bool).tril()[None] & pad[:, None, :])[:, None]
    scale = d**-0.5
    split = split_attention(q, k, v, (pk, pv), mask, scale)
    fused = prompt_attention(q, k, v, (pk, pv), mask, scale)
    times = interleaved(
        {
            "split": lambda: split_attention(q, k, v, (pk, pv), mask, scale),
            "fused": lambda: prompt_attention(q, k, v, (pk, pv), mask, scale),
        },
        rounds=5,
    )
    return {
        "what": f"{rows} rows x {row_tokens} own tokens after a {prefix}-token prefix, 9/3 heads of 64, one call",
        "split_s": times["split"],
        "fused_s": times["fused"],
        "split_over_fused": times["split"] / times["fused"],
        "max_abs_diff": float((split - fused).abs().max()),
    }


def decode_steps(lm: object, sizes: list[int], context: int, steps: int = 5) -> dict:
    from steerlab.models.hf_compat import cache_kwargs, output_cache

    hi = min(1000, int(getattr(lm.model.config, "vocab_size", 1000)))
    g = torch.Generator().manual_seed(0)
    out = {}
    for b in sizes:
        ctx = torch.randint(hi // 10, hi, (b, context), generator=g).to(lm.device)
        step = torch.randint(hi // 10, hi, (b, 1), generator=g).to(lm.device)
        with torch.inference_mode():
            first = output_cache(lm.model(input_ids=ctx, use_cache=True, logits_to_keep=1))

            def run(first: object = first, step: torch.Tensor = step, b: int = b) -> None:
                import copy

                cache = copy.deepcopy(first)
                for i in range(steps):
                    res = lm.model(
                        input_ids=step,
                        position_ids=torch.full((b, 1), context + i, device=lm.device),
                        use_cache=True,
                        logits_to_keep=1,
                        **cache_kwargs(lm.model, cache),
                    )
                    cache = output_cache(res)

            sec = interleaved({"steps": run}, rounds=3)["steps"] / steps
        out[str(b)] = {"step_s": sec, "tokens_per_s": b / sec}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--row-tokens", dest="row_tokens", type=int, default=200)
    ap.add_argument("--prefix", type=int, default=275)
    ap.add_argument("--context", type=int, default=200)
    ap.add_argument("--sizes", default="8,16,32,64")
    args = parse_args(ap, model="tiny", rows=4, row_tokens=16, prefix=8, context=16, sizes="2,4")
    lm = load_bench_model(args.model)
    sizes = [int(x) for x in args.sizes.split(",")]
    steps = decode_steps(lm, sizes, args.context)
    out = {
        "what": "prompt-chunk attention after a shared prefix (split vs fused); decode step cost by batch size",
        "model": args.model,
        "attention": attention_arms(args.rows, args.row_tokens, args.prefix),
        "decode_steps": {"context_tokens": args.context, "by_batch": steps},
        "decode_step_ratio_largest_over_smallest": steps[str(sizes[-1])]["step_s"]
        / steps[str(sizes[0])]["step_s"],
        "rows_ratio_largest_over_smallest": sizes[-1] / sizes[0],
    }
    path = write_result("batching", out, args)
    a = out["attention"]
    print(f"attention: split {a['split_s']:.3f} s, fused {a['fused_s']:.3f} s: {a['split_over_fused']:.2f}x")
    for b, r in steps.items():
        print(f"decode step, {b} rows: {r['step_s']:.3f} s ({r['tokens_per_s']:.0f} tokens/s)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
