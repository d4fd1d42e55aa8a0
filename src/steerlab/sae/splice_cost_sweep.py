"""The splice-cost check as a sweep: one job per layer (``steerlab sae splice-cost --executor ray``).

The serial run keeps every stage in one run directory (``raw``, ``layer_<k>``, ``report``), which one process at a
time may hold. So on an executor that runs jobs in parallel, each layer job works in its own scratch run
directory (``<out>/.sweep/layer_<k>``) seeded with a copy of the finished ``raw`` stage; the driver moves each
finished ``layer_<k>`` into ``<out>`` under the run directory's lock (same config, so the same stage keys) and
removes the scratch. The local executor runs the layers in ``<out>`` itself, one after the other. Either way the
report is computed from ``<out>`` and the files equal a serial run's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config import UserError
from ..executors.jobs import Job, JobContext, JobResult, RunnerJob, SweepError, check_visible
from ..runs import atomic_dir, replace_dir
from ..stages import DONE, Runner

SCRATCH = ".sweep"


def _runner(cfg: object, root: str | Path, progress: bool = True, models: object = None) -> Runner:
    """The splice-cost stages rooted at ``root`` (``out`` is read by no stage, so keys do not change)."""
    from .splice_cost import runner

    return runner(cfg.replace(out=str(root)), progress=progress, models=models)


@dataclass
class SeededRunnerJob(RunnerJob):
    """A ``RunnerJob`` in a scratch run directory that first copies finished stages from the main one."""

    seed_from: str = ""
    seed_stages: tuple[str, ...] = ()

    def prepare(self, r: Runner, ctx: JobContext) -> None:
        check_visible(self.seed_from)
        main = self.make_runner(self.config, Path(self.seed_from), progress=False, models=ctx.models)
        for stage in self.seed_stages:
            if not r.is_done(stage):
                if not main.is_done(stage):
                    raise UserError(f"stage {stage!r} is not finished in {self.seed_from}")
                with atomic_dir(r.path(stage)) as tmp:
                    shutil.copytree(main.path(stage), tmp, dirs_exist_ok=True)


def publish(main: Runner, scratch_root: Path, stage: str) -> None:
    """Move a stage finished in a scratch run directory into the main one (same key), then drop the scratch."""
    src = scratch_root / stage
    with main.locked():
        marker = (src / DONE).read_text() if (src / DONE).is_file() else ""
        if f'"key": "{main.key(stage)}"' not in marker:
            raise RuntimeError(f"{src} does not hold stage {stage!r} with the key of {main.root}")
        replace_dir(src, main.path(stage))
    shutil.rmtree(scratch_root, ignore_errors=True)
    try:
        scratch_root.parent.rmdir()  # the .sweep folder, once empty
    except OSError:
        pass


def run_splice_cost(cfg: object, executor: object = None, progress: bool = True) -> Runner:
    """Every layer's splice cost (a job per layer, on ``executor``), then the report; returns the main runner."""
    from ..executors.local import LocalExecutor

    executor = executor if executor is not None else LocalExecutor()
    models = getattr(executor, "models", None)
    main = _runner(cfg, cfg.out, progress=progress, models=models)
    todo = [k for k in cfg.layers if not main.is_done(f"layer_{k}")]
    params = {"model": cfg.model}
    if todo and executor.in_process:
        jobs = [
            Job(
                f"layer_{k}",
                {**params, "layer": k},
                RunnerJob(_runner, cfg, cfg.out, f"layer_{k}"),
                cfg.model,
            )
            for k in todo
        ]
        _check(executor.run(jobs, progress=progress))
    elif todo:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        scratch = Path(cfg.out) / SCRATCH

        def job(stage: str, seeded: tuple[str, ...], extra: dict) -> Job:
            task = SeededRunnerJob(
                _runner, cfg, str(scratch / stage), stage, seed_from=str(cfg.out), seed_stages=seeded
            )
            return Job(stage, {**params, **extra}, task, cfg.model)

        def done(res: JobResult) -> None:
            if res.ok:
                publish(main, scratch / res.name, res.name)

        if not main.is_done("raw"):
            _check(executor.run([job("raw", (), {"stage": "raw"})], progress=progress, on_result=done))
        jobs = [job(f"layer_{k}", ("raw",), {"layer": k}) for k in todo]
        _check(executor.run(jobs, progress=progress, on_result=done))
    main.run("report")
    return main


def _check(results: list[JobResult]) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        raise SweepError(failed, "splice-cost sweep")
