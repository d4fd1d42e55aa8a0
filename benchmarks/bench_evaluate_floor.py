"""The ASA evaluate stage against the compute floor of the tokens it must process.

The floor: the shared context (system prompt + few-shot turns) once, each TEST row's own prompt suffix once, and
every generated token that another token follows (the last one of a row needs no forward), all processed at the
speed of a bare batched forward of the model (``[64, 32]`` random tokens, no cache, no steering, timed in the same
run before and after the stage; the faster of the two medians, so the floor is never flattered). Times are this
process's CPU seconds (the machine is shared: wall time would measure the neighbours; torch on the threads the
command line chose, one on a busy machine; the wall time is in the result too). steerlab's time is the whole stage (generation of every row under every condition, the gate, the schema mask, stop rules, metrics
with bootstrap intervals, plots), rerun on a copy of a finished run directory so the run itself is untouched.
Target: <= 1.5x. Beside it, the arithmetic of the forwards the stage ran (each one-token forward, bare, at the rows
it carried; the contexts at the bare batched rate): how much a CPU's one token per row per step costs over the floor,
and how much steerlab adds above those forwards. And the least any decoder that makes one token per row per step could
spend on these tokens (the one-token schedule bound): the contexts at the bare rate, then every row of every batch and
condition in the same steps with no memory cap, as many steps as the longest row needs, each costing a bare one-token
forward of its rows (interpolated between measured row counts); attention to the cache and everything between forwards
cost it nothing. A bound above 1.5x the floor means no such schedule meets the target on this
machine. Run: ``.venv/bin/python benchmarks/bench_evaluate_floor.py --run runs/asa-smollm2-135m``
(a run of ``steerlab asa run``; ``--preset full`` for a run of ``--full``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _common import asa_run_copy, first_test_rows, parse_args, write_result

import steerlab.asa.evaluation as evaluation
from steerlab import threads
from steerlab.asa.calls import CallGrammar
from steerlab.asa.stages import AsaInputs
from steerlab.models import render_prompts, tokenize_texts
from steerlab.models.prefix import common_prefix_len


def bare_rate(lm, n: int = 3) -> float:  # noqa: ANN001
    """Tokens per CPU second of a bare batched forward ([64, 32] tokens, no cache): the model's own arithmetic."""
    hi = min(1000, lm.model.config.vocab_size)  # ordinary tokens of any vocabulary
    x = torch.randint(10, hi, (64, 32), generator=torch.Generator().manual_seed(0)).to(lm.device)
    times = []
    with torch.inference_mode():
        lm.model(input_ids=x[:8], logits_to_keep=1)
        for _ in range(n):
            t = time.process_time()
            lm.model(input_ids=x, logits_to_keep=1)
            times.append(time.process_time() - t)
    return x.numel() / statistics.median(times)


def one_token_seconds(lm, rows: list[int], n: int = 2) -> dict[int, float]:  # noqa: ANN001
    """CPU seconds of a bare forward of one token per row (no cache, every row's logits: what a decode step computes
    besides attention to its cache), the fastest of ``n``, for each distinct row count."""
    hi = min(1000, lm.model.config.vocab_size)
    out = {}
    with torch.inference_mode():
        for r in sorted(set(rows)):
            x = torch.randint(10, hi, (r, 1), generator=torch.Generator().manual_seed(r)).to(lm.device)
            times = []
            for _ in range(n):
                t = time.process_time()
                lm.model(input_ids=x, logits_to_keep=1)
                times.append(time.process_time() - t)
            out[r] = min(times)
    return out


STEP_GRID = (1, 8, 16, 32, 64, 128, 256, 512)  # rows of the bare one-token forwards the bound interpolates


def step_cost(grid: dict[int, float], rows: int) -> float:
    """CPU seconds of a one-token forward of ``rows`` rows: linear between the measured row counts of ``grid``, and
    beyond its largest along its last segment."""
    xs = sorted(grid)
    lo = max([x for x in xs if x <= rows], default=xs[0])
    hi = min([x for x in xs if x > rows], default=None)
    if hi is None:  # past the grid: the last segment's slope
        lo, hi = xs[-2], xs[-1]
    return grid[lo] + (grid[hi] - grid[lo]) * (rows - lo) / (hi - lo)


def schedule_bound(needed: list[int], grid: dict[int, float]) -> tuple[float, int]:
    """(CPU seconds, steps) of one-token steps if every row ran in the same steps: first every row's last prompt
    token, then step s carries the rows that still need an s-th forward (``needed[k]``: row k's generated tokens
    that another follows)."""
    steps = [len(needed)] + [sum(1 for n in needed if n >= s) for s in range(1, max(needed, default=0) + 1)]
    return sum(step_cost(grid, r) for r in steps), len(steps)


def _counter(steps: list[int]):  # noqa: ANN202
    """A forward pre-hook on the decoder stack recording the rows of every one-token forward."""

    def pre(_mod, args, kwargs):  # noqa: ANN001, ANN202
        x = kwargs.get("input_ids")
        if x is None:
            x = kwargs.get("inputs_embeds", args[0] if args else None)
        if x is not None and x.shape[1] == 1:
            steps.append(int(x.shape[0]))

    return pre


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--run", default=None, help="a finished ASA run directory (--smoke: a tiny one it builds)"
    )
    ap.add_argument("--preset", default="default", choices=["default", "full"])
    ap.add_argument(
        "--test-rows", type=int, default=None, help="the first N TEST prompts only (default: all)"
    )
    ap.add_argument(
        "--merge",
        choices=["on", "off"],
        default="on",
        help="on (the default): every batch x condition decodes in one pool (generate_conditions("
        "merge_conditions=True)); off: each decodes to its end, the A/B of the pool",
    )
    args = parse_args(ap, test_rows=4)
    threads.apply()  # as the command line does: the cores not busy with other work
    with asa_run_copy(ap, args, "bench-evaluate-") as (src, r):
        lm = r.model()
        rate_before = bare_rate(lm)
        # per row of every condition, its generated tokens that another follows, and the conditions: counted as each
        # call returns (a caller may add to the dict it got, which once counted some conditions twice)
        needed: list[int] = []
        conditions_seen = [0]
        gen_seconds = [0.0]
        real = evaluation.generate_conditions

        def timed(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            t = time.process_time()
            out = real(*a, **kw, merge_conditions=args.merge == "on")
            gen_seconds[0] += time.process_time() - t
            conditions_seen[0] += len(out)
            needed.extend(max(0, len(g.token_ids) - 1) for rows in out.values() for g in rows)
            return out

        evaluation.generate_conditions = timed
        mask_cost = [0.0, 0]  # CPU seconds inside the schema mask; rows whose scores it changed
        real_mask = CallGrammar.__call__

        def masked(self, rows, gen, logits):  # noqa: ANN001, ANN202
            before = logits.clone()  # untimed: to count the rows the schema changed
            t = time.process_time()
            out = real_mask(self, rows, gen, logits)
            mask_cost[0] += time.process_time() - t
            mask_cost[1] += int((out != before).any(dim=-1).sum())
            return out

        CallGrammar.__call__ = masked
        steps: list[int] = []  # rows of each one-token forward (decode steps and last prompt tokens)
        hook = lm.model.get_decoder().register_forward_pre_hook(_counter(steps), with_kwargs=True)
        try:
            with first_test_rows(args.test_rows):
                t0, w0 = time.process_time(), time.perf_counter()
                r.run("evaluate", force=True)
                stage_seconds, wall = time.process_time() - t0, time.perf_counter() - w0
        finally:
            evaluation.generate_conditions = real
            CallGrammar.__call__ = real_mask
            hook.remove()
        rate_after = bare_rate(lm)
        done = json.loads((r.path("evaluate") / "_DONE.json").read_text())
        cfg = r.config
        data = AsaInputs(cfg)
        msgs = data.messages("test")[: args.test_rows] if args.test_rows else data.messages("test")
        ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, msgs))
        prefix = common_prefix_len(ids)
        suffix = sum(len(x) - prefix for x in ids)
        conditions = conditions_seen[0]
        generated = sum(needed)
        floor_tokens = prefix + suffix + generated
        rate = max(rate_before, rate_after)
        floor_seconds = floor_tokens / rate
        # the arithmetic of the forwards the stage ran, at the row counts it ran them: every one-token forward
        # (decode steps, each condition's last prompt token) bare at its rows, the contexts (all but each row's
        # last prompt token) at the bare batched rate
        # one measurement of bare one-token forwards: at the rows the stage ran, and on the grid the bound uses
        one = one_token_seconds(lm, sorted(set(steps) | set(STEP_GRID)))
        shapes_seconds = sum(one[r] for r in steps) + (prefix + suffix - len(ids)) / rate
        # the least any schedule of one-token steps could cost: the contexts at the bare rate, every row's last prompt
        # token in one step and then every row decoding in the same steps (as many as the longest row needs), no
        # memory cap, no attention to a cache, nothing between forwards; each step a bare one-token forward
        grid = {r: one[r] for r in STEP_GRID}
        steps_seconds, bound_steps = schedule_bound(needed, grid)
        bound_seconds = (prefix + suffix - len(ids)) / rate + steps_seconds
        big, bigger = STEP_GRID[-2], STEP_GRID[-1]
        per_row = (grid[bigger] - grid[big]) / (bigger - big)  # what a row adds to a large step
        result = {
            "what": "ASA evaluate stage (TEST, every condition by generation) vs the compute floor of its tokens",
            "model": lm.name,
            "device": str(lm.device),
            "run": str(src),
            "preset": args.preset,
            "conditions": conditions,
            "rows": len(ids),
            "tokens": {
                "shared_context": prefix,
                "row_suffixes": suffix,
                "generated_needing_a_forward": generated,
                "floor_total": floor_tokens,
            },
            "bare_forward_tokens_per_cpu_s": {"before": round(rate_before, 1), "after": round(rate_after, 1)},
            "floor_cpu_seconds": round(floor_seconds, 2),
            "stage_cpu_seconds": round(stage_seconds, 2),
            "stage_wall_seconds": round(wall, 2),
            "generation_cpu_seconds": round(gen_seconds[0], 2),
            "stage_peak_rss_mb": done.get("peak_rss_mb"),
            "one_token_forwards": len(steps),
            "one_token_forwards_of_one_row": sum(1 for b in steps if b == 1),
            "mean_rows_per_one_token_forward": round(sum(steps) / max(1, len(steps)), 1),
            "batch_size": cfg.batch_size,
            "ratio_stage_over_floor": round(stage_seconds / floor_seconds, 2),
            "ratio_generation_over_floor": round(gen_seconds[0] / floor_seconds, 2),
            # what one token per row per forward costs on this machine, and steerlab's cost above those forwards
            "forward_shapes_cpu_seconds": round(shapes_seconds, 2),
            "ratio_forward_shapes_over_floor": round(shapes_seconds / floor_seconds, 2),
            "ratio_stage_over_forward_shapes": round(stage_seconds / shapes_seconds, 2),
            "one_token_forward_cpu_seconds": {
                str(r): round(t, 4) for r, t in one.items() if r in (1, 8, 16, 32, 64)
            },
            "one_token_step_cpu_seconds": {str(r): round(t, 4) for r, t in grid.items()},
            "per_row_of_a_large_step_cpu_seconds": round(per_row, 5),
            "per_row_over_floor_token": round(per_row * rate, 2),
            "one_token_schedule_steps": bound_steps,
            # what the tool's schema costs: the logits rule of constrained rows (xgrammar's bitmask and its apply)
            "schema_mask": {
                "cpu_seconds": round(mask_cost[0], 3),
                "constrained_tokens": mask_cost[1],
                "ms_per_constrained_token": round(1000 * mask_cost[0] / max(1, mask_cost[1]), 3),
                "share_of_stage": round(mask_cost[0] / stage_seconds, 4),
            },
            "one_token_schedule_bound_cpu_seconds": round(bound_seconds, 2),
            "ratio_bound_over_floor": round(bound_seconds / floor_seconds, 2),
            "ratio_stage_over_bound": round(stage_seconds / bound_seconds, 2),
            "target": "<= 1.5x",
            "threads": torch.get_num_threads(),
            "merge_conditions": args.merge,
            "command": f"bench_evaluate_floor.py --run {src} --preset {args.preset}"
            + (f" --test-rows {args.test_rows}" if args.test_rows else "")
            + (" --merge off" if args.merge == "off" else ""),
        }
        write_result("evaluate_floor" + ("" if args.merge == "on" else "_merge_off"), result, args)


if __name__ == "__main__":
    main()
