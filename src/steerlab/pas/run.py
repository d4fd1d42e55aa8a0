"""PAS end to end: every (benchmark, seed) job in its own resumable run directory, then per seed the
cross-benchmark tables (and the forgetting test), then summaries over seeds.

Layout: ``<out>/<model>/<site>/seed_<seed>/<benchmark>/<stage>/`` per job; ``seed_<seed>/results.json``,
``run_log.json`` and ``cross_benchmark_*.csv`` per seed; ``summary_seeds.csv`` and ``summary_aggregate.csv`` over
seeds.
"""

from __future__ import annotations

import csv
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..eval.stats import bootstrap_mean
from ..runs import load_tensors, save_csv, save_json
from ..stages import ModelHolder
from .config import PasConfig
from .mcq import load_benchmark, shuffle_options
from .stages import _acc, _setup, job_config, job_runner, score

log = logging.getLogger(__name__)


def run_root(cfg: PasConfig, model_name: str) -> Path:
    return Path(cfg.out) / model_name.replace("/", "_") / cfg.site


def preflight(cfg: PasConfig) -> None:
    """What can be checked before the model loads: every benchmark and the forgetting target can be read."""
    for name in [*cfg.benchmarks, *([cfg.target_benchmark] if cfg.catastrophic_test else [])]:
        load_benchmark(name)


def run_pas(cfg: PasConfig, lm: object | None = None, progress: bool = True) -> dict:
    """All benchmarks and seeds (each job resumable); writes under ``out/<model>/<site>/``."""
    models = ModelHolder()
    if lm is not None:
        models.put(cfg.model, lm)
    name = lm.name if lm is not None else cfg.model
    root = run_root(cfg, name)
    summary = []
    for seed in [cfg.seed, *cfg.seeds]:
        seed_dir = root / f"seed_{seed}"
        t0 = time.time()
        results = {}
        for bench in cfg.benchmarks:
            job = job_runner(
                job_config(cfg, bench, seed), seed_dir / _safe(bench), progress=progress, models=models
            )
            data = job.run("data")
            print(f"[steerlab] {bench} seed {seed}: {data['leak_train']['message']}", flush=True)
            results[bench] = job.run("report")
        job_lm = models.get(cfg.model, device=cfg.device, dtype=cfg.dtype, quantization=cfg.quantization)
        if cfg.catastrophic_test:
            results["forgetting"] = forgetting_test(job_lm, cfg, results, seed, seed_dir, progress)
        save_json(seed_dir / "results.json", results)
        save_json(
            seed_dir / "run_log.json",
            {
                "config": cfg.to_dict(),
                "seed": seed,
                "seconds": time.time() - t0,
                "steerlab": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "model": job_lm.name,
                "fingerprint": job_lm.fingerprint,
                "device": str(job_lm.device),
            },
        )
        _cross_benchmark(seed_dir, results)
        for bench, r in results.items():
            if bench == "forgetting":
                continue
            for m, mr in r["methods"].items():
                summary.append(
                    {
                        "seed": seed,
                        "benchmark": bench,
                        "method": m,
                        "layer": mr["layer"],
                        "strength": mr["strength"],
                        "unsteered": r["unsteered"]["test"],
                        "steered": mr["test"]["steered"]["accuracy"][0],
                        "negative": mr["test"]["negative"]["accuracy"][0],
                        "random": mr["test"]["random0"]["accuracy"][0] if "random0" in mr["test"] else None,
                        "majority_letter": r["majority_letter"]["test_accuracy"],
                        "mcnemar_p": mr["test"]["steered"]["mcnemar_vs_unsteered"]["p_value"],
                    }
                )
    save_csv(root / "summary_seeds.csv", summary)
    aggregate = aggregate_seeds(summary)
    save_csv(root / "summary_aggregate.csv", aggregate)
    return {"root": str(root), "summary": summary, "aggregate": aggregate}


def _safe(name: str) -> str:
    return Path(name).stem if name.endswith(".jsonl") else name.replace("/", "_")


def aggregate_seeds(summary: list[dict]) -> list[dict]:
    """Per benchmark and method over seeds: mean and sample sd of accuracies and of the steering gain."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in summary:
        groups.setdefault((row["benchmark"], row["method"]), []).append(row)
    out = []
    for (bench, method), rows in groups.items():
        gain = np.array([r["steered"] - r["unsteered"] for r in rows])
        steered = np.array([r["steered"] for r in rows])
        sd = lambda a: float(a.std(ddof=1)) if len(a) > 1 else float("nan")  # noqa: E731
        out.append(
            {
                "benchmark": bench,
                "method": method,
                "n_seeds": len(rows),
                "unsteered_mean": float(np.mean([r["unsteered"] for r in rows])),
                "steered_mean": float(steered.mean()),
                "steered_sd": sd(steered),
                "gain_mean": float(gain.mean()),
                "gain_sd": sd(gain),
                "majority_letter_mean": float(np.mean([r["majority_letter"] for r in rows])),
            }
        )
    return out


def forgetting_test(
    lm: object, cfg: PasConfig, results: dict, seed: int, seed_dir: Path, progress: bool
) -> dict:
    """Vectors tuned on each benchmark, applied at their selected operating point to the target benchmark."""
    target = [shuffle_options(it, seed) for it in load_benchmark(cfg.target_benchmark)][: cfg.limit]
    rows = {}
    for name, r in results.items():
        vecs = load_tensors(seed_dir / _safe(name) / "vectors" / "vectors.safetensors")
        conds = {"unsteered": None}
        for m, mr in r["methods"].items():
            conds[f"{name}:{m}"] = _setup(lm, vecs[f"{m}.L{mr['layer']}"], mr["layer"], mr["coef"], cfg.site)
        pred = score(
            lm,
            target,
            conds,
            chat=cfg.use_chat_template,
            batch_size=cfg.batch_size,
            progress=progress,
            desc="forgetting",
        )
        rows.update({c: bootstrap_mean(_acc(p, target), cfg.n_boot, seed=seed) for c, p in pred.items()})
    return {"target": cfg.target_benchmark, "accuracy": rows}


def _cross_benchmark(seed_dir: Path, results: dict) -> None:
    summary, flips = [], []
    for name, r in results.items():
        if name == "forgetting":
            continue
        report = seed_dir / _safe(name) / "report"
        with open(report / "predictions_unsteered.csv") as f:
            base = {row["id"]: row for row in csv.DictReader(f)}
        for m in r["methods"]:
            t = r["methods"][m]["test"]["steered"]
            summary.append(
                {
                    "benchmark": name,
                    "method": m,
                    "unsteered": r["unsteered"]["test"],
                    "steered": t["accuracy"][0],
                    "ci_low": t["accuracy"][1],
                    "ci_high": t["accuracy"][2],
                    "mcnemar_p": t["mcnemar_vs_unsteered"]["p_value"],
                    "majority_letter": r["majority_letter"]["test_accuracy"],
                }
            )
            with open(report / f"predictions_{m}.csv") as f:
                for row in csv.DictReader(f):
                    b = base[row["id"]]
                    if b["correct"] != row["correct"]:
                        flips.append(
                            {
                                "benchmark": name,
                                "method": m,
                                "id": row["id"],
                                "flip": "wrong->right" if row["correct"] == "1" else "right->wrong",
                                "gold": row["gold"],
                                "unsteered": b["pred"],
                                "steered": row["pred"],
                                "question": row["question"],
                            }
                        )
    save_csv(seed_dir / "cross_benchmark_summary.csv", summary)
    save_csv(seed_dir / "cross_benchmark_flips.csv", flips)
