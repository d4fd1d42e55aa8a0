"""Capture of the last-prompt-token state at 3 layers for N prompts: steerlab vs the naive loop.

Naive loop = what a notebook does: one prompt at a time, ``output_hidden_states=True`` (all layers kept).
Target: >= 5x faster. Run: ``.venv/bin/python benchmarks/bench_capture.py [--n 256] [--model smollm2-135m]``.
"""

from __future__ import annotations

import argparse

import torch
from _common import load_bench_model, prompts, timeit, write_result

from steerlab.capture import capture
from steerlab.models import render_prompts


def naive(lm, texts: list[str], layers: list[int]) -> torch.Tensor:  # noqa: ANN001
    out = []
    with torch.no_grad():
        for t in texts:
            ids = lm.tokenizer(t, return_tensors="pt", add_special_tokens=False).to(lm.device)
            hs = lm.model(**ids, output_hidden_states=True).hidden_states
            out.append(torch.stack([hs[k + 1][0, -1] for k in layers]).cpu())
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lm = load_bench_model(args.model)
    layers = [5, 15, 20]
    ps = prompts(args.n)
    texts = render_prompts(lm.tokenizer, ps, chat=True)

    def ours(shared: bool) -> torch.Tensor:
        acts = capture(
            lm, ps, layers, chat=True, batch_size=args.batch_size, progress=False, shared_prefix=shared
        )
        return torch.stack([acts[k] for k in layers], dim=1)

    ref = naive(lm, texts, layers)
    for shared in (False, True):
        got = ours(shared)
        err = (got - ref).abs().max().item()
        assert err < 1e-3 * ref.abs().max().item(), f"capture differs from the naive loop by {err}"
    t_naive = timeit(lambda: naive(lm, texts, layers), repeat=args.repeat)
    t_batched = timeit(lambda: ours(False), repeat=args.repeat)
    t_shared = timeit(lambda: ours(True), repeat=args.repeat)
    write_result(
        "capture",
        {
            "what": f"last-token state at layers {layers} for {args.n} chat prompts on {args.model}",
            "device": str(lm.device),
            "naive_s": t_naive,
            "steerlab_batched_s": t_batched,
            "steerlab_shared_prefix_s": t_shared,
            "speedup_batched": t_naive / t_batched,
            "speedup_shared_prefix": t_naive / t_shared,
            "target": ">= 5x",
        },
    )


if __name__ == "__main__":
    main()
