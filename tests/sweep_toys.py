"""Toy stages and jobs for the sweep tests (no model): a two-stage runner whose second stage can raise or kill its
own process once, to test failure reports and retries."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from steerlab.config import Config, opt
from steerlab.stages import Runner, Stage, StageContext


@dataclass
class ToyConfig(Config):
    n: int = opt(1, "a number")
    fail: bool = opt(False, "stage b raises")
    kill_flag: str = opt("", "stage b kills its process unless this file exists (then creates it)")


def stage_a(ctx: StageContext) -> dict:
    (ctx.out / "a.txt").write_text(f"{ctx.config.n * 2}\n")
    return {"double": ctx.config.n * 2}


def stage_b(ctx: StageContext) -> dict:
    c = ctx.config
    if c.fail:
        raise ValueError(f"toy failure for n={c.n}")
    if c.kill_flag and not Path(c.kill_flag).exists():
        Path(c.kill_flag).write_text("killed once\n")
        os._exit(1)  # like a worker killed by the OOM killer
    return {"sum": ctx.result("a")["double"] + 1, "pid": os.getpid()}


STAGES = (
    Stage("a", stage_a, reads=("n",)),
    Stage("b", stage_b, reads=("n", "fail", "kill_flag"), after=("a",)),
)


def toy_runner(cfg: ToyConfig, root: str | Path, progress: bool = True, models: object = None) -> Runner:
    return Runner(STAGES, cfg, root, progress=progress, models=models)


def toy_jobs(root: Path, ns: list[int], fail: tuple[int, ...] = (), kill_flag: str = "") -> list:
    from steerlab.sweeps import Job, RunnerJob

    return [
        Job(
            f"n{n}",
            {"n": n},
            RunnerJob(
                toy_runner, ToyConfig(n=n, fail=n in fail, kill_flag=kill_flag), str(root / f"n{n}"), "b"
            ),
        )
        for n in ns
    ]
