"""torch.profiler tables of ASA stages (by default actions and evaluate), rerun on a copy of a finished run.

Where a stage's time goes, operator by operator: the model's own arithmetic (``aten::mm``, attention, the
element-wise ops of the MLP and the norms) against everything else (cache copies, the schema mask, Python between
forwards: the profile's total minus its operators). ``--test-rows N`` profiles evaluate on the first N TEST prompts
(the same code path, a shorter profile). Also writes the per-stage table of the run (wall seconds, CPU seconds, peak
resident memory, from each stage's ``_DONE.json``) that docs/limits.md quotes.
Run: ``.venv/bin/python benchmarks/profile_asa_stages.py --run runs/asa-smollm2-135m [--test-rows 128]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import asa_run_copy, first_test_rows, parse_args, write_result

from steerlab import threads
from steerlab.asa.stages import STAGES


def stage_table(run: Path) -> list[dict]:
    rows = []
    for s in STAGES:
        f = run / s.name / "_DONE.json"
        if f.is_file():
            d = json.loads(f.read_text())
            rows.append(
                {
                    "stage": s.name,
                    "seconds": d.get("seconds"),
                    "cpu_seconds": d.get("cpu_seconds"),
                    "peak_rss_mb": d.get("peak_rss_mb"),
                }
            )
    return rows


def _shown(path: Path) -> str:
    """The path as the docs quote it: relative to the repository when it is inside."""
    root = Path(__file__).resolve().parent.parent
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--run", default=None, help="a finished ASA run directory (--smoke: a tiny one it builds)"
    )
    ap.add_argument("--preset", default="default", choices=["default", "full"])
    ap.add_argument("--stages", default="actions,evaluate")
    ap.add_argument("--test-rows", type=int, default=128)
    ap.add_argument("--rows", type=int, default=20, help="operators per table")
    args = parse_args(ap, test_rows=4, rows=5, stages="evaluate")
    from torch.profiler import ProfilerActivity, profile

    threads.apply()
    out = Path(args.out)
    with asa_run_copy(ap, args, "profile-asa-") as (src, r):
        summary: dict = {
            "what": f"torch.profiler tables of the ASA stages {args.stages} rerun on a copy of {src}",
            "run": str(src),
            "stages": stage_table(src),
            "profiles": {},
        }
        r.model()
        with first_test_rows(args.test_rows):
            for stage in args.stages.split(","):
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    t, w = time.process_time(), time.perf_counter()
                    r.run(stage, force=True)
                    cpu, wall = time.process_time() - t, time.perf_counter() - w
                avg = prof.key_averages()
                table = avg.table(sort_by="self_cpu_time_total", row_limit=args.rows)
                path = out / f"asa_stage_profile_{stage}.txt"
                path.write_text(table)
                total = sum(e.self_cpu_time_total for e in avg) / 1e6
                top = sorted(avg, key=lambda e: -e.self_cpu_time_total)[: args.rows]
                # the profiler times operators by the clock (a descheduled operator counts its wait), so shares
                # are of the profiled wall time, and the part outside operators is the wall time they leave
                summary["profiles"][stage] = {
                    "cpu_seconds": round(cpu, 2),
                    "wall_seconds": round(wall, 2),
                    "operators_self_seconds": round(total, 2),
                    "outside_operators_seconds": round(max(0.0, wall - total), 2),
                    "top": [
                        {
                            "op": e.key,
                            "self_s": round(e.self_cpu_time_total / 1e6, 3),
                            "share": round(e.self_cpu_time_total / 1e6 / max(wall, total), 3),
                            "calls": e.count,
                        }
                        for e in top
                    ],
                    "table": _shown(path),
                    "test_rows": args.test_rows if stage == "evaluate" else None,
                }
    summary["command"] = (
        f"profile_asa_stages.py --run {src} --stages {args.stages} --test-rows {args.test_rows}"
    )
    write_result("asa_stage_profile", summary, args)


if __name__ == "__main__":
    main()
