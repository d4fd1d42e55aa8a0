"""The same PAS sweep (``--seeds`` seeds x 1 benchmark = that many jobs) serial (``--executor local``) vs on a
local Ray with 2 workers (``--executor ray``), in one run, and the check that both wrote the same files.

Each arm starts cold: the serial arm loads the model once; each Ray worker loads it once (Ray's own start-up is
timed separately). On a machine with C cores, 2 workers of 1 thread each race one process of C threads, so the
ratio measures what Ray costs and what parallel jobs gain over one multi-threaded process; on a cluster the
jobs spread over machines. ``--model tiny`` (``--smoke``) saves the tiny random model to disk for the workers. Run: ``.venv/bin/python benchmarks/bench_sweep_ray.py [--model smollm2-135m]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from _common import TINY, load_bench_model, parse_args, write_result

from steerlab.pas.config import load_config
from steerlab.pas.run import run_pas
from steerlab.sweeps import LocalExecutor, RayExecutor
from steerlab.sweeps.ray_executor import import_ray

BOOKKEEPING = {"_DONE.json": ("finished", "seconds"), "run_log.json": ("seconds", "executor")}


def tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".lock":
            data = p.read_bytes().replace(str(root).encode(), b"<out>")
            if p.name in BOOKKEEPING:
                obj = json.loads(data)
                for k in BOOKKEEPING[p.name]:
                    obj.pop(k, None)
                data = json.dumps(obj, sort_keys=True).encode()
            out[str(p.relative_to(root))] = data
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--model", default="smollm2-135m", help="a spec every worker can load (alias, path, hub id)"
    )
    ap.add_argument(
        "--seeds", type=int, default=4, help="jobs in the sweep (one benchmark x this many seeds)"
    )
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    args = parse_args(ap, model=TINY, seeds=2, limit=30)
    seeds = list(range(1, args.seeds + 1))
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_ray-"))
    spec = args.model
    if spec == TINY:  # every worker loads the model by its spec: a folder on disk
        from steerlab.sae.finetune import save_model_dir

        spec = str(save_model_dir(load_bench_model(TINY), work / "tiny-model"))

    def cfg(out: Path):  # noqa: ANN202
        return load_config(
            None,
            {
                "model": spec,
                "device": "cpu",
                "seed": seeds[0],
                "seeds": seeds[1:],
                "limit": args.limit,
                "layers": "10:25:7",
                "strengths": [0.1, 0.2],
                "methods": ["PASf", "iPASwo"],
                "n_boot": 200,
                "out": str(out),
            },
        )

    t = time.perf_counter()
    serial = run_pas(cfg(work / "serial"), progress=False, executor=LocalExecutor())
    t_serial = time.perf_counter() - t
    ray = import_ray()
    t = time.perf_counter()
    try:
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - Ray gives its raylet a fixed 30 s to start: too short on a loaded machine
        if "timed out during startup" not in str(e):
            raise
        ray.shutdown()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    with RayExecutor(workers=args.workers, max_retries=0) as ex:
        on_ray = run_pas(cfg(work / "ray"), progress=False, executor=ex)
    t_ray = time.perf_counter() - t
    ray.shutdown()
    a, b = tree(work / "serial"), tree(work / "ray")
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    write_result(
        f"sweep_ray_{args.model}",
        {
            "what": f"PAS sweep, {len(seeds)} jobs (steerlab_mcq x {len(seeds)} seeds, limit {args.limit}, "
            f"layers 10,17,24, 2 strengths, PASf+iPASwo), {args.model}",
            "device": "cpu",
            "cpus": os.cpu_count(),
            "serial_torch_threads": torch.get_num_threads(),
            "ray_workers": args.workers,
            "serial_s": t_serial,
            "ray_init_s": t_init,
            "ray_2_workers_s": t_ray,
            "speedup": t_serial / t_ray,
            "speedup_including_ray_init": t_serial / (t_ray + t_init),
            "files_compared": len(a),
            "files_that_differ": differ,
            "same_aggregate": serial["aggregate"] == on_ray["aggregate"],
        },
        args,
    )


if __name__ == "__main__":
    main()
