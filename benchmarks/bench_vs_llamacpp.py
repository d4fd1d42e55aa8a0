"""steerlab's generation on the embedded GGUF vs llama.cpp (llama-cpp-python) on the same file and prompts, greedy.

llama.cpp is the engine a user would otherwise pick for this file. Both get the same chat prompts as the same
token ids (the chat template rendered once), ``--tokens`` new tokens each (EOS ignored on both sides, so the work
is equal), greedy, the same number of threads (steerlab's choice for this machine, ``steerlab.threads``). steerlab
runs the de-quantised float32 weights (what it steers) batched as its pipeline does, and one prompt at a time;
llama.cpp runs the Q4_1 weights one prompt at a time (llama-cpp-python decodes one sequence). Times are process CPU
seconds (the machine is shared; both engines run inside this process), medians over ``--rounds`` interleaved
rounds; the ratio is steerlab / llama.cpp, reported whatever it is. Token agreement is reported too: the two
engines compute with different weights' precision, so greedy paths may part.
Skips cleanly (exit 0, no result file) when ``llama_cpp`` is not installed: ``pip install llama-cpp-python``
compiles llama.cpp (minutes on 2 cores) and is not part of steerlab's set-up.
Run: ``.venv/bin/python benchmarks/bench_vs_llamacpp.py [--tokens 32 --n 8 --rounds 3]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import torch
from _common import parse_args, prompts, write_result

from steerlab import threads
from steerlab.generation import generate
from steerlab.models import load_model, render_prompts, tokenize_texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--n", type=int, default=8, help="prompts")
    ap.add_argument("--rounds", type=int, default=3)
    args = parse_args(ap, tokens=2, n=1, rounds=1)
    if importlib.util.find_spec("llama_cpp") is None:
        print(
            "llama-cpp-python is not installed: skipped (pip install llama-cpp-python to run this comparison)"
        )
        return
    from llama_cpp import Llama

    n_threads = threads.apply().threads
    lm = load_model("smollm2-135m")
    gguf = lm.source["path"]
    chats = [[{"role": "user", "content": p}] for p in prompts(args.n)]
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, chats))
    llm = Llama(model_path=gguf, n_ctx=512, n_threads=n_threads, n_batch=512, verbose=False, logits_all=False)

    def llama_one(tokens: list[int]) -> list[int]:
        llm.reset()
        out = []
        for tok in llm.generate(tokens, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(tok))
            if len(out) == args.tokens:
                break
        return out

    outs: dict[str, list[list[int]]] = {}

    def steer_batched() -> None:
        outs["steerlab_batched"] = [
            g.token_ids for g in _generate(lm, chats, args.tokens, batch_size=len(chats))
        ]

    def steer_one() -> None:
        outs["steerlab_one"] = [_generate(lm, [c], args.tokens, batch_size=1)[0].token_ids for c in chats]

    def llama() -> None:
        outs["llamacpp"] = [llama_one(x) for x in ids]

    arms = {"steerlab_batched": steer_batched, "steerlab_one": steer_one, "llamacpp": llama}
    for fn in arms.values():  # warm-up
        fn()
    cpu: dict[str, list[float]] = {k: [] for k in arms}
    wall: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(args.rounds):
        for k, fn in arms.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[k].append(time.process_time() - c)
            wall[k].append(time.perf_counter() - w)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    agree = sum(a == b for x, y in zip(outs["steerlab_one"], outs["llamacpp"]) for a, b in zip(x, y)) / max(
        1, sum(len(x) for x in outs["llamacpp"])
    )
    result = {
        "what": f"greedy generation of {args.tokens} tokens for {args.n} chat prompts on the embedded GGUF: "
        "steerlab (float32 de-quantised, batched and one at a time) vs llama.cpp (Q4_1, one at a time)",
        "model": "smollm2-135m",
        "device": "cpu",
        "threads": n_threads,
        "cpu_seconds": {k: round(v, 3) for k, v in med.items()},
        "wall_seconds": {k: round(statistics.median(v), 3) for k, v in wall.items()},
        "tokens_per_cpu_s": {k: round(args.n * args.tokens / v, 1) for k, v in med.items()},
        "ratio_steerlab_batched_over_llamacpp": round(med["steerlab_batched"] / med["llamacpp"], 2),
        "ratio_steerlab_one_over_llamacpp": round(med["steerlab_one"] / med["llamacpp"], 2),
        "token_agreement_steerlab_vs_llamacpp": round(agree, 3),
        "llama_cpp_version": __import__("llama_cpp").__version__,
        "rounds": args.rounds,
        "command": f"bench_vs_llamacpp.py --tokens {args.tokens} --n {args.n} --rounds {args.rounds}",
    }
    write_result("vs_llamacpp", result, args)


def _generate(lm, chats, tokens: int, batch_size: int):  # noqa: ANN001, ANN202
    """steerlab's generate with exactly ``tokens`` new tokens per row (EOS not a stop, as for llama.cpp here)."""
    with torch.inference_mode():
        return generate(
            lm, chats, max_new_tokens=tokens, batch_size=batch_size, progress=False, ignore_eos=True
        )


if __name__ == "__main__":
    main()
