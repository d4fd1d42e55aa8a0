"""Transcoder training throughput: tokens/s of training from pairs streamed out of the model, against a bare forward
pass of the same model over the same tokens (same run, same machine).

What is timed, over the same conversations (general text + calculator conversations, as the study trains on):
- bare forward: the whole model, batched by length, no hooks (the yardstick);
- capture: ``CapturedPairs`` filling its buffer with (MLP input, MLP output) pairs at the layer (the forward stops
  after that layer);
- training from memory: optimiser steps on pairs already captured;
- streamed training, end to end: a ``CapturedPairs`` with a buffer of a quarter of the corpus (so it streams, with
  bounded memory) and as many training samples as the corpus has tokens (one epoch), capture included.
The ratio reported is streamed-training tokens/s divided by bare-forward tokens/s: above 1, training a transcoder
costs less than running the model once over its data.

Run: ``.venv/bin/python benchmarks/bench_transcoder_training.py [--n 300] [--layer 15] [--d-sae 2304]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import TINY, load_bench_model, parse_args, write_result

from steerlab.models import left_pad, position_ids_from_mask, render_prompts, tokenize_texts
from steerlab.models.text import length_sorted_batches
from steerlab.sae.corpus import offline_corpus
from steerlab.sae.stream import CapturedPairs
from steerlab.sae.train import train_transcoder
from steerlab.sae.transcoder import Transcoder


def bare_forward(lm, texts: list, batch_size: int) -> int:  # noqa: ANN001
    """The plain model over ``texts``; returns the number of tokens."""
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, texts, chat=True))
    with torch.inference_mode():
        for batch in length_sorted_batches([len(x) for x in ids], batch_size):
            inp, mask = left_pad([ids[i] for i in batch], lm.tokenizer.pad_token_id, lm.device)
            lm.model(
                input_ids=inp, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False
            )
    return sum(len(x) for x in ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300, help="conversations")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--d-sae", type=int, default=2304)
    ap.add_argument("--batch-size", type=int, default=512, help="tokens per training step")
    ap.add_argument("--capture-batch", type=int, default=16)
    args = parse_args(ap, model=TINY, n=8, d_sae=128, batch_size=32, capture_batch=4)
    lm = load_bench_model(args.model)
    texts = offline_corpus(args.n, 0, seed=0)[0]
    bare_forward(lm, texts[:16], args.capture_batch)  # warm-up

    t = time.perf_counter()
    n_tokens = bare_forward(lm, texts, args.capture_batch)
    t_fwd = time.perf_counter() - t

    t = time.perf_counter()
    full = CapturedPairs(lm, texts, [args.layer], buffer_tokens=10**9, capture_batch=args.capture_batch)
    t_cap = time.perf_counter() - t
    n_pairs = full.n  # every token but the first of each conversation

    steps = max(1, n_pairs // args.batch_size)
    tc = Transcoder(lm.hidden_size, args.d_sae, activation="jumprelu", seed=0)
    t = time.perf_counter()
    train_transcoder(tc, full, steps=steps, batch_size=args.batch_size, target_l0=64, progress=False)
    t_train = time.perf_counter() - t

    stream = None
    t = time.perf_counter()
    stream = CapturedPairs(
        lm, texts, [args.layer], buffer_tokens=n_pairs // 4, capture_batch=args.capture_batch
    )
    tc = Transcoder(lm.hidden_size, args.d_sae, activation="jumprelu", seed=0)
    train_transcoder(tc, stream, steps=steps, batch_size=args.batch_size, target_l0=64, progress=False)
    t_stream = time.perf_counter() - t
    trained = steps * args.batch_size

    fwd_tps = n_tokens / t_fwd
    stream_tps = trained / t_stream
    write_result(
        f"transcoder_training_{args.model}",
        {
            "what": f"JumpReLU transcoder (d_sae {args.d_sae}, target L0 64) at layer {args.layer} of {args.model}, "
            f"{args.n} conversations ({n_tokens} tokens), {steps} steps of {args.batch_size} tokens (one epoch)",
            "device": str(lm.device),
            "bare_forward_tokens_per_s": fwd_tps,
            "capture_tokens_per_s": n_pairs / t_cap,
            "training_from_memory_tokens_per_s": trained / t_train,
            "streamed_training_tokens_per_s": stream_tps,
            "ratio_streamed_training_to_bare_forward": stream_tps / fwd_tps,
            "stream": stream.describe(),
            "stream_buffer_mb": 2 * stream.n * lm.hidden_size * 4 / 2**20,
            "materialised_pairs_mb": 2 * n_pairs * lm.hidden_size * 4 / 2**20,
            "torch_threads": torch.get_num_threads(),
        },
        args,
    )


if __name__ == "__main__":
    main()
