"""Generation with ASA's gated controller inside plain Hugging Face ``model.generate`` vs ``model.generate`` alone.

Same batch (8 chat prompts, left-padded), greedy, exactly ``--tokens`` new tokens in both arms; the controller is
``steerlab.asa.GatedSteering`` with random ASA parameters of the model's shape (router over 4 domains, a probe per
domain, directions; standardised on the batch's own states so p(tool) spreads instead of saturating, strength 0.5
x the mean hidden norm; the gates each row got are in the result), at the middle layer: it routes, scores and gates each row once at prefill and adds its vector
there. The arms alternate round by round so they share the machine's noise. Target: within 5%.
``--profile`` writes torch.profiler tables of both arms to ``benchmarks/results/``.
Run: ``.venv/bin/python benchmarks/bench_asa_generate.py [--model smollm2-135m]``.
"""

from __future__ import annotations

import argparse

import torch
from _common import TINY, interleaved, load_bench_model, parse_args, profile_top, prompts, sync, write_result

from steerlab.asa import AsaParams, GatedSteering
from steerlab.capture import capture, mean_norm
from steerlab.models import left_pad, render_prompts, tokenize_texts

DOMAINS = ["code", "math", "search", "translation"]


def random_params(states: torch.Tensor, layer: int, seed: int = 0) -> AsaParams:
    """ASA parameters of the right shapes with random directions and weights, standardised on the batch's own
    states at ``layer`` (so p(tool) spreads instead of saturating) and scaled by their mean norm."""
    g = torch.Generator().manual_seed(seed)
    d = states.shape[1]
    mean, std = states.mean(0), states.std(0).clamp(min=1e-3)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    t = {
        "router.mean": mean,
        "router.std": std,
        "router.weight": rand(len(DOMAINS), d) / d**0.5,
        "router.bias": rand(len(DOMAINS)),
        "v_global": rand(d),
    }
    for name in DOMAINS:
        t.update(
            {
                f"probe.{name}.mean": mean,
                f"probe.{name}.std": std,
                f"probe.{name}.weight": rand(d) / d**0.5,
                f"probe.{name}.bias": rand(1),
                f"v_domain.{name}": rand(d),
            }
        )
    return AsaParams.from_tensors(t, layer, DOMAINS, mean_norm(states))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--profile", action="store_true")
    args = parse_args(ap, model=TINY, batch=2, tokens=2, rounds=1)
    lm = load_bench_model(args.model)
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts(args.batch), chat=True))
    input_ids, mask = left_pad(ids, lm.tokenizer.pad_token_id, lm.device)
    layer = lm.n_layers // 2
    states = capture(lm, prompts(args.batch), layer, chat=True, progress=False)[layer]
    gated = GatedSteering(lm, random_params(states, layer), strength=0.5, tau=0.55, beta=0.5)
    rows = list(range(args.batch))

    def generate() -> torch.Tensor:
        with torch.inference_mode():
            out = lm.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
        sync(lm)
        return out

    def with_asa() -> torch.Tensor:
        with gated(rows):
            return generate()

    plain_out, asa_out = generate(), with_asa()
    gates = gated.decisions(args.batch)["gate"]
    assert plain_out.shape == asa_out.shape
    t = interleaved({"plain": generate, "asa": with_asa}, rounds=args.rounds)
    if args.profile:
        name = f"asa_generate_{lm.device.type}_{args.model}"
        res = args.out
        profile_top(generate, res / f"{name}_profile_plain.txt")
        profile_top(with_asa, res / f"{name}_profile_asa.txt")
    write_result(
        f"asa_generate_{args.model}",
        {
            "what": f"greedy model.generate, batch {args.batch}, {args.tokens} new tokens, {args.model}; "
            f"ASA gated controller at layer {layer} (random parameters) vs none",
            "device": str(lm.device),
            "gates": {str(k): int((gates == k).sum()) for k in (-1, 0, 1)},
            "rows_changed_by_asa": int((plain_out != asa_out).any(-1).sum()),
            "plain_generate_s": t["plain"],
            "asa_generate_s": t["asa"],
            "overhead": t["asa"] / t["plain"] - 1,
            "target": "<= 0.05",
            "rounds": args.rounds,
        },
        args,
    )


if __name__ == "__main__":
    main()
