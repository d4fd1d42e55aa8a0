"""Where steerlab's steering handle costs time inside plain HF ``model.generate``, next to steering-vectors and repeng.

Arms (interleaved, same prompts, greedy, batch 16, 32 new tokens, a vector at layer 15, every position):
plain model, steerlab ``steer(..., policy="all")``, steering-vectors ``SteeringVector.apply``, repeng
``ControlModel.set_control`` (peers skipped when not installed). Time is **CPU time of the process with torch on one
thread** by default, so the ratio holds on a shared, overloaded machine (wall time there measures the neighbours);
``--wall`` measures wall time with the default thread count instead.

Then the hooks themselves: every call of steerlab's ``PhaseTracker._pre_hook`` and ``SteeringHandle._apply``, of
steering-vectors' additive hook and of repeng's ``ControlModule.forward`` (minus the wrapped block) is timed with
``time.thread_time`` (this thread's CPU time), split into prefill and decode steps; and a cProfile (thread-time
clock) of one steered generate lists the torch calls made from inside steerlab's hooks.
Run: ``python benchmarks/bench_hf_generate_overhead.py [--model smollm2-135m] [--rounds 5]`` (peers need the venv of
docs/portability.md).
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
from _common import load_bench_model, prompts, write_result

from steerlab.models import left_pad, render_prompts, tokenize_texts
from steerlab.steering import steer

phase_mod = importlib.import_module("steerlab.steering.phase")
steer_mod = importlib.import_module("steerlab.steering.steer")


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


@contextlib.contextmanager
def patched(obj: object, name: str, wrapper):  # noqa: ANN001
    orig = getattr(obj, name)
    setattr(obj, name, wrapper(orig))
    try:
        yield
    finally:
        setattr(obj, name, orig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wall", action="store_true", help="wall time with the default thread count")
    args = ap.parse_args()
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

    # per-hook CPU cost
    hooks = HookClock()

    def kind_of(hidden: torch.Tensor) -> str:
        return "prefill" if hidden.shape[1] > 1 else "decode"

    def wrap_pre(orig):  # noqa: ANN001, ANN202
        def f(self, mod, a, kw):  # noqa: ANN001, ANN202
            t = time.thread_time()
            r = orig(self, mod, a, kw)
            ref = kw.get("input_ids") if kw.get("input_ids") is not None else kw.get("inputs_embeds")
            hooks.add(
                "steerlab PhaseTracker._pre_hook",
                "prefill" if ref.shape[1] > 1 else "decode",
                time.thread_time() - t,
            )
            return r

        return f

    def wrap_apply(orig):  # noqa: ANN001, ANN202
        def f(self, hidden):  # noqa: ANN001, ANN202
            t = time.thread_time()
            r = orig(self, hidden)
            hooks.add("steerlab SteeringHandle._apply", kind_of(hidden), time.thread_time() - t)
            return r

        return f

    with (
        patched(phase_mod.PhaseTracker, "_pre_hook", wrap_pre),
        patched(steer_mod.SteeringHandle, "_apply", wrap_apply),
    ):
        with arms["steerlab"]():
            gen()
    if "steering_vectors" in arms:
        svm = importlib.import_module("steering_vectors.steering_vector")

        def wrap_make(orig):  # noqa: ANN001, ANN202
            def make(*a, **kw):  # noqa: ANN202
                fn = orig(*a, **kw)

                def hook(m, i, o):  # noqa: ANN001, ANN202
                    t = time.thread_time()
                    r = fn(m, i, o)
                    hooks.add(
                        "steering-vectors hook_fn",
                        kind_of(o if isinstance(o, torch.Tensor) else o[0]),
                        time.thread_time() - t,
                    )
                    return r

                return hook

            return make

        with patched(svm, "_create_additive_hook", wrap_make), arms["steering_vectors"]():
            gen()
    if "repeng" in arms:
        ctrl = importlib.import_module("repeng.control")

        def wrap_fwd(orig):  # noqa: ANN001, ANN202
            def fwd(self, *a, **kw):  # noqa: ANN001, ANN202
                inner = [0.0]
                block = self.block

                def timed_block(*x, **y):  # noqa: ANN202
                    t0 = time.thread_time()
                    out = block(*x, **y)
                    inner[0] += time.thread_time() - t0
                    return out

                t = time.thread_time()
                r = orig(_BlockSwap(self, timed_block), *a, **kw)
                out = r[0] if isinstance(r, tuple) else r
                hooks.add(
                    "repeng ControlModule.forward (minus block)",
                    kind_of(out),
                    time.thread_time() - t - inner[0],
                )
                return r

            return fwd

        with patched(ctrl.ControlModule, "forward", wrap_fwd), arms["repeng"]():
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
    st.sort_stats("tottime").print_callees(r"steering/(phase|steer)\.py")
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
    write_result("hf_generate_overhead", result)


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


class _BlockSwap:
    """A view of a repeng ControlModule whose ``block`` is a timed wrapper (its other attributes pass through)."""

    def __init__(self, mod: object, block: object) -> None:
        self._mod, self.block = mod, block

    def __getattr__(self, name: str) -> object:
        return getattr(self._mod, name)


if __name__ == "__main__":
    main()
