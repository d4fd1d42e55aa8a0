"""ASA over several models and datasets as a sweep (``steerlab asa runs``): one job per (model, dataset), each a
whole ASA run (extract ... report) in its own run directory ``<out>/<model>/<dataset>/``, then ``summary.csv``:
TEST F1 and FPR of the plain model and of ASA per job, with intervals.

The layer grid stays inside a job: the tune stage chooses layer, strength, tau and beta together by generating
on VALID, from states extracted once per job, so splitting it would only repeat the extraction.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..base.files import atomic_path
from ..executors.jobs import Job, JobContext, RunnerJob, SweepError
from ..runs import save_csv


def _safe(name: str) -> str:
    """A model or dataset spec as one folder name."""
    p = Path(name)
    text = p.stem if p.suffix in (".jsonl", ".gguf") else name
    return text.strip("/").replace("/", "_") or "model"


def _runner(cfg: object, root: str | Path, progress: bool = True, models: object = None):  # noqa: ANN202
    from ..asa.stages import runner

    return runner(cfg, root, progress=progress, models=models)


@dataclass
class AsaRunJob(RunnerJob):
    """A whole ASA run; ``report.md`` copied to the run directory's top, as ``steerlab asa run`` does."""

    def __call__(self, ctx: JobContext) -> dict:
        out = super().__call__(ctx)
        root = Path(self.root)
        with atomic_path(root / "report.md") as tmp:
            shutil.copyfile(root / "report" / "report.md", tmp)
        return out


def asa_jobs(cfg: object, models: list[str], datasets: list[str], out: str | Path) -> list[Job]:
    """One job per (model, dataset): ``cfg`` with that model and data, in ``out/<model>/<dataset>/``."""
    jobs = []
    for model in models:
        for data in datasets:
            root = Path(out) / _safe(model) / _safe(data)
            job_cfg = cfg.replace(model=model, data=data, out=str(root))
            jobs.append(
                Job(
                    f"{_safe(model)}/{_safe(data)}",
                    {"model": model, "data": data},
                    AsaRunJob(_runner, job_cfg, str(root), "report", also=("evaluate",)),
                    model=model,
                )
            )
    return jobs


def summary_rows(results: list) -> list[dict]:
    """Per finished job: TEST F1 / FPR of baseline and ASA (point and 95% interval), and the operating point."""
    rows = []
    for r in results:
        ev = r.value["results"]["evaluate"]
        row = {
            **r.params,
            **{f"op_{k}": v for k, v in ev["operating_point"].items() if not isinstance(v, dict)},
        }
        for cond in ("baseline", "asa"):
            for metric in ("f1", "fpr"):
                point, lo, hi = ev["rows"][cond][metric]
                row.update({f"{cond}_{metric}": point, f"{cond}_{metric}_lo": lo, f"{cond}_{metric}_hi": hi})
        row["delta_f1"] = ev["asa_minus_baseline"]["f1"]["diff"]
        rows.append(row)
    return rows


def run_asa_sweep(
    cfg: object,
    models: list[str],
    datasets: list[str],
    out: str | Path,
    executor: object = None,
    progress: bool = True,
) -> dict:
    """Every (model, dataset) ASA run on ``executor``, then ``out/summary.csv``; ``SweepError`` names failed jobs
    (after the others finished; the summary then lists the finished ones only and says so in its name)."""
    from ..asa.stages import preflight
    from ..executors.local import LocalExecutor

    executor = executor if executor is not None else LocalExecutor()
    for data in datasets:
        preflight(cfg.replace(data=data))  # data, tools and prompt checked before any model is loaded
    results = executor.run(asa_jobs(cfg, models, datasets, out), progress=progress)
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    path = Path(out) / ("summary.csv" if not failed else "summary_partial.csv")
    save_csv(path, summary_rows(done))
    if failed:
        raise SweepError(failed, "ASA sweep")
    return {"summary": str(path), "rows": summary_rows(done)}


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ..asa.config import AsaConfig
    from ..cli_args import config_from_args
    from ..config import UserError, coerce
    from ..executors import executor_from_args

    cfg = config_from_args(AsaConfig, args)
    models = coerce(args.models, list[str], "--models") if args.models else [cfg.model]
    datasets = coerce(args.datasets, list[str], "--datasets") if args.datasets else [cfg.data]
    if not models or not datasets:
        raise UserError("--models and --datasets must each name at least one")
    executor = executor_from_args(args)
    try:
        with executor:
            res = run_asa_sweep(cfg, models, datasets, args.sweep_out, executor, progress=not args.quiet)
    except SweepError as err:
        print(f"steerlab: error: {err}", file=sys.stderr)
        return 1
    for row in res["rows"]:
        print(
            f"{row['model']} / {row['data']}: F1 {row['baseline_f1']:.3f} -> {row['asa_f1']:.3f}, "
            f"FPR {row['baseline_fpr']:.3f} -> {row['asa_fpr']:.3f}"
        )
    print(
        f"[steerlab] summary: {res['summary']} (each run's report.md under {args.sweep_out}/<model>/<data>/)"
    )
    return 0


def add_cli(asub: argparse._SubParsersAction) -> None:
    """``steerlab asa runs`` (``asa sweep`` is the probe-AUC stage): ``steerlab.cli`` adds it under ``steerlab asa``
    (the method does not import its sweeps)."""
    from ..asa.config import AsaConfig
    from ..cli_args import add_common_args, add_config_args
    from ..executors import add_executor_args

    p = asub.add_parser(
        "runs",
        help="the whole ASA run for every model x dataset (jobs, local or on Ray)",
        description="One ASA run (every stage) per model x dataset in <out>/<model>/<dataset>/, resumable, then "
        "summary.csv. --executor ray runs the jobs in parallel on a Ray cluster (docs/ray.md).",
    )
    p.add_argument("--models", default=None, help="comma list of model specs (default: the config's model)")
    p.add_argument("--datasets", default=None, help="comma list of datasets: builtin or JSONL paths")
    p.add_argument(
        "--sweep-out", default="runs/asa-sweep", help="the sweep's folder (default runs/asa-sweep)"
    )
    add_config_args(p, AsaConfig, skip=("model", "data", "out"))
    add_executor_args(p)
    add_common_args(p)
    p.set_defaults(func=_cmd_sweep)
