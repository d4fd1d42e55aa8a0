"""steerlab vs steering-vectors vs repeng, in one run on the same prompts and the same model.

Two jobs: (1) train a vector from 128 contrast pairs at 3 layers (batch 16 for every library; steerlab: capture +
mean difference; steering-vectors: ``train_steering_vector`` with its mean aggregator; repeng:
``ControlVector.train`` with PCA of differences); (2) greedy-generate 32 tokens for a batch of 16 chat prompts with
the vector on at every position (steerlab: its own ``generate`` and, separately, a ``steer`` handle inside HF
``model.generate``; the peers: their hooks inside HF ``model.generate``). Every generate arm makes exactly 32 new
tokens per row (EOS ignored: ``min_new_tokens`` for HF, steerlab's EOS set emptied for this run).

Time is process CPU time with torch on one thread by default (``--wall`` for wall time and all threads), because
this machine is shared and wall time would measure the neighbours; arms interleave over ``--rounds`` rounds and the
median is reported. Ratios are peer time / steerlab time (> 1: steerlab faster).
Run: ``OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/bench_vs_peers.py [--model smollm2-135m] [--rounds 3]``
in the peers' venv that ``scripts/peers_env.sh`` builds (docs/portability.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import TINY, load_bench_model, parse_args, prompts, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from peer_data import contrast_pairs  # noqa: E402
from steerlab.capture import capture  # noqa: E402
from steerlab.generation import generate  # noqa: E402
from steerlab.models import left_pad, render_prompts, tokenize_texts  # noqa: E402
from steerlab.steering import steer  # noqa: E402
from steerlab.vectors.estimators import mean_difference  # noqa: E402

LAYERS = [10, 15, 20]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wall", action="store_true")
    args = parse_args(ap, model=TINY, pairs=4, batch=2, tokens=2, rounds=1)
    if not args.wall:
        torch.set_num_threads(1)
    clock = time.perf_counter if args.wall else time.process_time
    import repeng
    import steering_vectors as sv

    lm = load_bench_model(args.model)
    pairs = contrast_pairs(args.pairs)
    pos, neg = [p for p, _ in pairs], [n for _, n in pairs]

    def train_steerlab() -> dict:
        a = capture(lm, pos + neg, layers=LAYERS, chat=False, batch_size=args.batch, progress=False)
        return {k: mean_difference(a[k][: len(pos)], a[k][len(pos) :], normalize=False) for k in LAYERS}

    def train_sv() -> dict:
        return sv.train_steering_vector(lm.model, lm.tokenizer, pairs, layers=LAYERS, batch_size=args.batch)

    def train_repeng() -> dict:
        data = [repeng.DatasetEntry(p, n) for p, n in pairs]
        return repeng.ControlVector.train(
            lm.model, lm.tokenizer, data, hidden_layers=LAYERS, batch_size=args.batch
        )

    train = {"steerlab": train_steerlab, "steering_vectors": train_sv, "repeng": train_repeng}
    t_train = {k: [] for k in train}
    vec = None
    for _ in range(args.rounds):
        for name, fn in train.items():
            t = clock()
            out = fn()
            t_train[name].append(clock() - t)
            if name == "steerlab":
                vec = out
    v = vec[15] / vec[15].norm() * 4.0

    texts = prompts(args.batch)
    chat_texts = render_prompts(lm.tokenizer, texts, chat=True)
    input_ids, mask = left_pad(tokenize_texts(lm.tokenizer, chat_texts), lm.tokenizer.pad_token_id, lm.device)

    def hf_gen() -> None:
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

    def steerlab_own() -> None:
        with steer(lm, v, 15, coef=1.0, policy="all"):
            generate(
                lm,
                texts,
                chat=True,
                max_new_tokens=args.tokens,
                batch_size=args.batch,
                progress=False,
                ignore_eos=True,  # every row makes all its tokens, as the HF arms do
            )

    def steerlab_hf() -> None:
        with steer(lm, v, 15, coef=1.0, policy="all"):
            hf_gen()

    def sv_gen() -> None:
        with sv.SteeringVector({15: v}).apply(lm.model, multiplier=1.0):
            hf_gen()

    def repeng_gen() -> None:
        cm = repeng.ControlModel(lm.model, [15])
        cm.set_raw_control({15: v})
        try:
            hf_gen()
        finally:
            cm.unwrap()

    gens = {
        "steerlab": steerlab_own,
        "steerlab_handle_in_hf_generate": steerlab_hf,
        "steering_vectors": sv_gen,
        "repeng": repeng_gen,
    }
    steerlab_own()
    t_gen = {k: [] for k in gens}
    for _ in range(args.rounds):
        for name, fn in gens.items():
            t = clock()
            fn()
            t_gen[name].append(clock() - t)
    med_train = {k: statistics.median(x) for k, x in t_train.items()}
    med_gen = {k: statistics.median(x) for k, x in t_gen.items()}
    write_result(
        "vs_peers",
        {
            "what": f"train: {args.pairs} pairs, layers {LAYERS}, batch {args.batch}; generate: batch {args.batch}, "
            f"{args.tokens} new tokens, vector at layer 15 on every position; {args.model}",
            "clock": "wall" if args.wall else "process CPU time, torch.set_num_threads(1)",
            "device": str(lm.device),
            "versions": {
                p: md.version(p) for p in ("steering-vectors", "repeng", "transformers", "torch", "numpy")
            },
            "train_s": med_train,
            "generate_s": med_gen,
            "train_ratio_peer_over_steerlab": {k: med_train[k] / med_train["steerlab"] for k in med_train},
            "generate_ratio_peer_over_steerlab": {k: med_gen[k] / med_gen["steerlab"] for k in med_gen},
            "rounds": args.rounds,
        },
        args,
    )


if __name__ == "__main__":
    main()
