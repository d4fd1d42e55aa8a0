"""Where steerlab's steering handle costs time inside plain HF ``model.generate``, next to steering-vectors and repeng.

Arms (interleaved, same prompts, greedy, batch 16, 32 new tokens, a vector at layer 15, every position):
plain model, steerlab ``steer(..., policy="all")``, steering-vectors ``SteeringVector.apply``, repeng
``ControlModel.set_control`` (peers skipped when not installed). Time is **CPU time of the process with torch on one
thread** by default, so the ratio holds on a shared, overloaded machine (wall time there measures the neighbours);
``--wall`` measures wall time with the default thread count instead.

Then the hooks themselves: every call of steerlab's forward pre-hook on the decoder stack (phase tracking) and of
its hook on the steered block, of steering-vectors' hook on that block and of repeng's ``ControlModule`` around it
(minus the wrapped block) is timed with ``time.thread_time`` (this thread's CPU time), split into prefill and decode
steps. The timing uses only torch's public hook API: a hook of ours registered first (``prepend=True``) and one
registered last on the same module bracket the library's hooks, so no library internals are patched. A cProfile
(thread-time clock) of one steered generate lists the torch calls made from inside steerlab's hooks.
Run: ``OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/bench_hf_generate_overhead.py [--model smollm2-135m]
[--rounds 5]`` (the peers' venv: ``bash scripts/peers_env.sh``; in ``.venv`` the peer arms are skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import importlib.util
import io
import pstats
import statistics
import time

import torch
from _common import TINY, load_bench_model, parse_args, prompts, write_result

from steerlab.models import left_pad, render_prompts, tokenize_texts
from steerlab.steering import steer


class HookClock:
    """Accumulates thread CPU time per hook, split by whether the forward was a prefill (seq > 1) or a decode step."""

    def __init__(self) -> None:
        self.t: dict[tuple[str, str], list[float]] = {}

    def add(self, name: str, kind: str, dt: float) -> None:
        self.t.setdefault((name, kind), []).append(dt)

    def summary(self) -> dict:
        return {
            f"{n}/{k}": {"calls": len(v), "mean_us": 1e6 * statistics.mean(v), "total_ms": 1e3 * sum(v)}
            for (n, k), v in sorted(self.t.items())
        }


def _kind(seq_len: int) -> str:
    return "prefill" if seq_len > 1 else "decode"


def _hidden(x: object) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else x[0]


@contextlib.contextmanager
def bracket_output_hooks(
    module: torch.nn.Module, name: str, clock: HookClock, inner: torch.nn.Module | None = None
):  # noqa: ANN201
    """Time the forward hooks already on ``module`` (ours run first and last around them); with ``inner``, time
    ``module``'s whole forward minus ``inner``'s (a wrapper module such as repeng's ``ControlModule``)."""
    t0: list[float] = []
    t_inner: list[float] = []

    def start(_m, _a):  # noqa: ANN001, ANN202
        t0.append(time.thread_time())

    def end(_m, _a, out):  # noqa: ANN001, ANN202
        dt = time.thread_time() - t0.pop()
        if inner is not None:
            dt -= t_inner.pop()
        clock.add(name, _kind(_hidden(out).shape[1]), dt)

    def inner_start(_m, _a):  # noqa: ANN001, ANN202
        t_inner.append(time.thread_time())

    def inner_end(_m, _a, _out):  # noqa: ANN001, ANN202
        t_inner.append(time.thread_time() - t_inner.pop())

    if inner is None:
        handles = [module.register_forward_hook(lambda m, a, o: start(m, a), prepend=True)]
    else:
        handles = [
            module.register_forward_pre_hook(start, prepend=True),
            inner.register_forward_pre_hook(inner_start),
            inner.register_forward_hook(inner_end),
        ]
    handles.append(module.register_forward_hook(end))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def bracket_pre_hooks(module: torch.nn.Module, name: str, clock: HookClock):  # noqa: ANN201
    """Time the forward pre-hooks already on ``module`` (ours run first and last around them)."""
    t0: list[float] = []

    def start(_m, _a, _kw):  # noqa: ANN001, ANN202
        t0.append(time.thread_time())

    def end(_m, a, kw):  # noqa: ANN001, ANN202
        dt = time.thread_time() - t0.pop()
        ref = kw.get("input_ids") if kw.get("input_ids") is not None else kw.get("inputs_embeds")
        if ref is None and a:
            ref = a[0]
        clock.add(name, _kind(ref.shape[1]), dt)

    handles = [
        module.register_forward_pre_hook(start, prepend=True, with_kwargs=True),
        module.register_forward_pre_hook(end, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wall", action="store_true", help="wall time with the default thread count")
    args = parse_args(ap, model=TINY, batch=2, tokens=2, rounds=1)
    if not args.wall:
        torch.set_num_threads(1)
    clock = time.perf_counter if args.wall else time.process_time
    lm = load_bench_model(args.model)
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts(args.batch), chat=True))
    input_ids, mask = left_pad(ids, lm.tokenizer.pad_token_id, lm.device)
    v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0))
    v = (v / v.norm()).to(lm.device)

    def gen() -> torch.Tensor:
        with torch.no_grad():
            out = lm.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        return out

    arms: dict = {
        "plain": contextlib.nullcontext,
        "steerlab": lambda: steer(lm, v, args.layer, coef=1.0, policy="all"),
    }
    if importlib.util.find_spec("steering_vectors"):
        import steering_vectors as sv

        arms["steering_vectors"] = lambda: sv.SteeringVector({args.layer: v}).apply(lm.model, multiplier=1.0)
    if importlib.util.find_spec("repeng"):
        import repeng

        @contextlib.contextmanager
        def repeng_arm():  # noqa: ANN202
            cm = repeng.ControlModel(lm.model, [args.layer])
            cm.set_raw_control({args.layer: v})
            try:
                yield
            finally:
                cm.unwrap()

        arms["repeng"] = repeng_arm

    gen()
    times: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(args.rounds):
        for name, ctx in arms.items():
            with ctx():
                t = clock()
                gen()
                times[name].append(clock() - t)
    med = {k: statistics.median(x) for k, x in times.items()}

    # per-hook CPU cost: the hooks each library put on the model, bracketed by ours
    hooks = HookClock()
    block = lm.model.model.layers[args.layer]
    with arms["steerlab"]():
        with (
            bracket_pre_hooks(lm.model.model, "steerlab pre-hook on the decoder stack", hooks),
            bracket_output_hooks(block, f"steerlab hook on block {args.layer}", hooks),
        ):
            gen()
    if "steering_vectors" in arms:
        with arms["steering_vectors"]():
            with bracket_output_hooks(block, f"steering-vectors hook on block {args.layer}", hooks):
                gen()
    if "repeng" in arms:
        with arms["repeng"]():
            wrapper = lm.model.model.layers[args.layer]  # repeng's ControlModule around the block
            name = "repeng ControlModule (minus block)"
            with bracket_output_hooks(wrapper, name, hooks, inner=wrapper.block):
                gen()

    # host reads of tensor values (on CUDA each one waits for the GPU queue to drain): counted per generate
    host_reads = {name: count_host_reads(gen, ctx) for name, ctx in arms.items()}
    host_reads = {k: v - host_reads["plain"] for k, v in host_reads.items()}

    # which torch calls steerlab's hooks make, by CPU time
    prof = cProfile.Profile(timer=time.thread_time)
    with arms["steerlab"]():
        prof.enable()
        gen()
        prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("tottime").print_callees(r"(models/phase|models/sites|steering/steer)\.py")
    callees = buf.getvalue()
    print(callees[-6000:])
    steps = args.tokens
    result = {
        "what": f"HF generate, batch {args.batch}, {args.tokens} new tokens, vector at layer {args.layer}, policy all, "
        f"{args.model}",
        "clock": "wall" if args.wall else "process CPU time, torch.set_num_threads(1)",
        "device": str(lm.device),
        "median_s": med,
        "overhead_vs_plain": {k: med[k] / med["plain"] - 1 for k in med},
        "steerlab_vs_peers": {k: med["steerlab"] / med[k] for k in med if k not in ("plain", "steerlab")},
        "per_step_ms_over_plain": {k: 1e3 * (med[k] - med["plain"]) / steps for k in med},
        "hook_cpu_time": hooks.summary(),
        "extra_host_reads_per_generate_vs_plain": host_reads,
        "rounds": args.rounds,
    }
    write_result("hf_generate_overhead", result, args)


_READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__")


def count_host_reads(gen, ctx) -> int:  # noqa: ANN001
    """Calls that read a tensor's values into Python (bool/item/tolist/...), plus torch.equal and nonzero, during
    one generate. On CPU they are free; on a GPU each is a device-to-host synchronisation."""
    n = [0]
    saved = {name: getattr(torch.Tensor, name) for name in _READS if hasattr(torch.Tensor, name)}
    saved_fn = {"equal": torch.equal, "nonzero": torch.nonzero}
    saved_meth = torch.Tensor.nonzero

    def counted(f):  # noqa: ANN001, ANN202
        def g(*a, **k):  # noqa: ANN202
            n[0] += 1
            return f(*a, **k)

        return g

    for name, f in saved.items():
        setattr(torch.Tensor, name, counted(f))
    torch.equal, torch.nonzero, torch.Tensor.nonzero = (
        counted(saved_fn["equal"]),
        counted(saved_fn["nonzero"]),
        counted(saved_meth),
    )
    try:
        with ctx():
            gen()
    finally:
        for name, f in saved.items():
            setattr(torch.Tensor, name, f)
        torch.equal, torch.nonzero, torch.Tensor.nonzero = saved_fn["equal"], saved_fn["nonzero"], saved_meth
    return n[0]


if __name__ == "__main__":
    main()
