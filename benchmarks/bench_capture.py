"""Capture of the last-prompt-token state at 3 layers for N prompts: steerlab vs the naive loop, and vs the limit.

Naive loop = what a notebook does: one prompt at a time, ``output_hidden_states=True`` (all layers kept).
Target: >= 5x faster. The limit = a bare batched forward over the same padded batches (already tokenized and
padded), stopped after the deepest layer asked (the decoder truncated there): steerlab's capture on the same
tokens (no shared prefix) must be within 1.3x of it; with the shared prefix it computes fewer tokens than the
bare forward. ``--profile`` writes torch.profiler tables of both to ``benchmarks/results/``; ``--limit-only`` times
only steerlab vs the bare forward.
Run: ``.venv/bin/python benchmarks/bench_capture.py [--n 256] [--model smollm2-135m]``.
"""

from __future__ import annotations

import argparse

import torch
from _common import (
    TINY,
    interleaved,
    load_bench_model,
    padded_batches,
    parse_args,
    profile_top,
    prompts,
    sync,
    timeit,
    write_result,
)

from steerlab.capture import capture
from steerlab.models import render_prompts, tokenize_texts


def naive(lm, texts: list[str], layers: list[int]) -> torch.Tensor:  # noqa: ANN001
    out = []
    with torch.no_grad():
        for t in texts:
            ids = lm.tokenizer(t, return_tensors="pt", add_special_tokens=False).to(lm.device)
            hs = lm.model(**ids, output_hidden_states=True).hidden_states
            out.append(torch.stack([hs[k + 1][0, -1] for k in layers]).cpu())
    return torch.stack(out)


def bare(lm, batches: list, layers: list[int]) -> torch.Tensor:  # noqa: ANN001
    """The decoder truncated after the deepest layer (and its final norm off, so every state read is a block
    output), one forward per padded batch; the states read from it."""
    inner = lm.model.model
    full, norm = inner.layers, inner.norm
    deepest = max(layers)
    out = []
    try:
        inner.layers = torch.nn.ModuleList(list(full)[: deepest + 1])
        inner.norm = torch.nn.Identity()
        with torch.inference_mode():
            for batch, kw in batches:
                hs = inner(**kw, use_cache=False, output_hidden_states=True).hidden_states
                out.append((batch, torch.stack([hs[k + 1][:, -1] for k in layers], dim=1).cpu()))
    finally:
        inner.layers, inner.norm = full, norm
    sync(lm)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--profile", action="store_true", help="torch.profiler tables of steerlab and the bare forward"
    )
    ap.add_argument(
        "--limit-only",
        action="store_true",
        help="time only steerlab vs the bare forward (the naive loop still checks the states)",
    )
    args = parse_args(ap, model=TINY, n=8, batch_size=4, repeat=1)
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
    batches = padded_batches(lm, tokenize_texts(lm.tokenizer, texts), args.batch_size)
    limit = bare(lm, batches, layers)
    n_tokens = sum(int(kw["attention_mask"].numel()) for _, kw in batches)
    t_naive = None if args.limit_only else timeit(lambda: naive(lm, texts, layers), repeat=args.repeat)
    t = interleaved(
        {
            "bare": lambda: bare(lm, batches, layers),
            "batched": lambda: ours(False),
            "shared": lambda: ours(True),
        },
        rounds=args.repeat,
    )
    t_bare, t_batched, t_shared = t["bare"], t["batched"], t["shared"]
    if args.profile:
        name = f"capture_{lm.device.type}_{args.model}"
        res = args.out
        profile_top(lambda: ours(False), res / f"{name}_profile_steerlab.txt")
        profile_top(lambda: bare(lm, batches, layers), res / f"{name}_profile_bare.txt")
    bare_rows = torch.cat([x for _, x in limit])
    bare_order = [i for b, _ in limit for i in b]
    ref_sorted = ref[bare_order]
    err = (bare_rows - ref_sorted).abs().max().item()
    assert err < 1e-3 * ref.abs().max().item(), f"the bare forward reads other states ({err})"
    naive_fields = (
        {}
        if t_naive is None
        else {
            "naive_s": t_naive,
            "speedup_batched": t_naive / t_batched,
            "speedup_shared_prefix": t_naive / t_shared,
            "target": ">= 5x",
        }
    )
    write_result(
        f"capture_{args.model}",
        {
            "what": f"last-token state at layers {layers} for {args.n} chat prompts on {args.model}",
            "device": str(lm.device),
            **naive_fields,
            "steerlab_batched_s": t_batched,
            "steerlab_shared_prefix_s": t_shared,
            "bare_forward_to_deepest_layer_s": t_bare,
            "padded_tokens_per_pass": n_tokens,
            "steerlab_batched_vs_bare": t_batched / t_bare,
            "steerlab_shared_prefix_vs_bare": t_shared / t_bare,
            "limit_target": "steerlab_batched_vs_bare <= 1.3",
            "rounds": args.repeat,
        },
        args,
    )


if __name__ == "__main__":
    main()
