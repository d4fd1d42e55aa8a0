"""PAS end to end: every (benchmark, seed) job in its own resumable run directory, then per seed the
cross-benchmark tables (and the forgetting test), then summaries over seeds.

The jobs run through an executor (``steerlab.executors``: in this process by default, or on Ray); what they write
and what is aggregated from them does not depend on which.

Layout: ``<out>/<model>/<site>/seed_<seed>/<benchmark>/<stage>/`` per job; ``seed_<seed>/results.json``,
``run_log.json`` and ``cross_benchmark_*.csv`` per seed; ``summary_seeds.csv`` and ``summary_aggregate.csv`` over
seeds.
"""

from __future__ import annotations

import csv
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..config import UserError
from ..eval.stats import bootstrap_mean
from ..runs import load_tensors, save_csv, save_json
from .config import PasConfig
from .mcq import load_benchmark, shuffle_options
from .stages import _acc, _setup, job_config, job_runner, score

log = logging.getLogger(__name__)


def run_root(cfg: PasConfig, model_name: str) -> Path:
    return Path(cfg.out) / model_name.replace("/", "_") / cfg.site


def preflight(cfg: PasConfig) -> None:
    """What can be checked before the model loads: the layers against the model's config, every benchmark and
    the forgetting target can be read."""
    from ..models import check_layers, model_shape

    shape = model_shape(cfg.model)
    if shape is not None:
        check_layers(cfg.model, cfg.layer_list(shape[0]), "layers")
    for name in [*cfg.benchmarks, *([cfg.target_benchmark] if cfg.catastrophic_test else [])]:
        load_benchmark(name)


def pas_jobs(cfg: PasConfig, root: Path, until: str = "report") -> list:
    """One job per (seed, benchmark), each reaching stage ``until`` in ``root/seed_<seed>/<benchmark>/``."""
    from ..executors import Job, RunnerJob

    return [
        Job(
            name=f"seed_{seed}/{_safe(bench)}",
            params={"model": cfg.model, "benchmark": bench, "seed": seed},
            task=RunnerJob(
                job_runner,
                job_config(cfg, bench, seed),
                str(root / f"seed_{seed}" / _safe(bench)),
                until=until,
                also=("data",),
                model_info=True,
            ),
            model=cfg.model,
        )
        for seed in [cfg.seed, *cfg.seeds]
        for bench in cfg.benchmarks
    ]


def _executor(cfg: PasConfig, lm: object | None, executor: object | None) -> object:
    """The executor to run the jobs on (local by default), holding ``lm`` when a model object is given."""
    from ..executors import LocalExecutor

    executor = executor if executor is not None else LocalExecutor()
    if lm is not None:
        if not getattr(executor, "in_process", False):
            raise UserError(
                "a model object (lm=) can only be used with the local executor; give the model by name or path"
            )
        executor.models.put(cfg.model, lm)
    return executor


def run_pas_stage(
    cfg: PasConfig,
    stage: str,
    lm: object | None = None,
    progress: bool = True,
    executor: object | None = None,
) -> dict:
    """Every (benchmark, seed) job brought to ``stage`` (earlier stages first when not done), nothing aggregated:
    ``steerlab pas <stage>``. Returns the root and each job's stage folder; ``SweepError`` names failed jobs."""
    from ..executors import SweepError

    executor = _executor(cfg, lm, executor)
    root = run_root(cfg, lm.name if lm is not None else cfg.model)
    done = executor.run(pas_jobs(cfg, root, until=stage), progress=progress)
    failed = [r for r in done if not r.ok]
    if failed:
        raise SweepError(failed, f"PAS stage {stage}")
    return {"root": str(root), "jobs": {r.name: str(root / r.name / stage) for r in done}}


@dataclass
class ForgettingJob:
    """The forgetting test of one seed (needs the model, so it runs where the jobs run)."""

    cfg: PasConfig
    results: dict
    seed: int
    seed_dir: str

    def __call__(self, ctx: object) -> dict:
        c = self.cfg
        lm = ctx.models.get(c.model, device=c.device, dtype=c.dtype, quantization=c.quantization)
        ctx.report("forgetting")
        return forgetting_test(lm, c, self.results, self.seed, Path(self.seed_dir), ctx.progress)


def run_pas(
    cfg: PasConfig, lm: object | None = None, progress: bool = True, executor: object | None = None
) -> dict:
    """All benchmarks and seeds, each (benchmark, seed) job resumable in its own run directory, run by
    ``executor`` (default: ``LocalExecutor``, in this process; ``RayExecutor`` for a cluster); then the per-seed
    tables and the summaries over seeds, written under ``out/<model>/<site>/`` the same whatever ran the jobs.

    A failed job does not stop the others: every seed whose jobs all finished gets its tables, then
    ``SweepError`` names the failed jobs (the summaries over seeds are written only when nothing failed).
    """
    from ..executors import Job, SweepError

    executor = _executor(cfg, lm, executor)
    name = lm.name if lm is not None else cfg.model
    root = run_root(cfg, name)
    seeds = [cfg.seed, *cfg.seeds]

    def said(res: object) -> None:
        if res.ok:
            data = res.value["results"]["data"]
            print(
                f"[steerlab] {data['benchmark']} seed {res.params['seed']}: {data['leak_train']['message']}",
                flush=True,
            )

    jobs = pas_jobs(cfg, root)
    done = {
        (r.params["seed"], r.params["benchmark"]): r
        for r in executor.run(jobs, progress=progress, on_result=said)
    }
    failed = [r for r in done.values() if not r.ok]
    complete = [s for s in seeds if all(done[(s, b)].ok for b in cfg.benchmarks)]
    per_seed = {s: {b: done[(s, b)].value["results"]["report"] for b in cfg.benchmarks} for s in complete}
    if cfg.catastrophic_test and complete:
        forget = [
            Job(
                f"seed_{s}/forgetting",
                {"model": cfg.model, "target_benchmark": cfg.target_benchmark, "seed": s},
                ForgettingJob(cfg, per_seed[s], s, str(root / f"seed_{s}")),
                model=cfg.model,
            )
            for s in complete
        ]
        for s, r in zip(complete, executor.run(forget, progress=progress)):
            if r.ok:
                per_seed[s]["forgetting"] = r.value
            else:
                failed.append(r)
        complete = [s for s in complete if "forgetting" in per_seed[s]]
    summary = []
    for seed in complete:
        seed_dir = root / f"seed_{seed}"
        results = per_seed[seed]
        model = done[(seed, cfg.benchmarks[0])].value["model"]
        save_json(seed_dir / "results.json", results)
        save_json(
            seed_dir / "run_log.json",
            {
                "config": cfg.to_dict(),
                "seed": seed,
                "seconds": sum(done[(seed, b)].seconds for b in cfg.benchmarks),  # this seed's jobs
                "steerlab": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "model": model["name"],
                "fingerprint": model["fingerprint"],
                "device": model["device"],
                "executor": getattr(executor, "name", type(executor).__name__),
            },
        )
        _cross_benchmark(seed_dir, results)
        summary.extend(_summary_rows(seed, results))
    if failed:
        raise SweepError(failed, "PAS sweep")
    save_csv(root / "summary_seeds.csv", summary)
    aggregate = aggregate_seeds(summary)
    save_csv(root / "summary_aggregate.csv", aggregate)
    return {"root": str(root), "summary": summary, "aggregate": aggregate}


def _summary_rows(seed: int, results: dict) -> list[dict]:
    rows = []
    for bench, r in results.items():
        if bench == "forgetting":
            continue
        for m, mr in r["methods"].items():
            rows.append(
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
    return rows


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
