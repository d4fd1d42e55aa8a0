"""Jobs on a Ray cluster (``pip install steerlab[ray]``): one actor per worker slot, pinned to the CPUs and GPUs a
job needs, loading each model once and running job after job.

Why actors rather than plain tasks: a model must stay loaded between jobs, and Ray ends the worker of a GPU task
after each call; an actor keeps its process, its GPU and its model. A worker that dies (killed, out of memory, a
lost node) is restarted by Ray and the job it was running is retried (``max_retries`` times); since every job
writes resumable stage directories, the retry skips what the dead worker had finished. A job that raises is
not retried: it comes back as a failed result naming its parameters while the other jobs go on.

Run directories are written by the workers at the same paths a serial run uses, so every node must see the
output directory at the same path (a shared filesystem).
"""

from __future__ import annotations

import gc
import math
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from ..config import UserError
from ..stages import ModelHolder
from .jobs import Job, JobContext, JobResult, run_job, worker_name
from .local import OnResult


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(
            "the Ray executor needs the ray package: pip install 'steerlab[ray]' (or pip install ray), "
            "or use --executor local"
        ) from None
    return ray


class OneModelHolder(ModelHolder):
    """A worker's models: the last one asked for stays loaded; asking for another frees it first (a worker that
    moves from one model's jobs to the next must not hold both in GPU memory)."""

    def get(self, spec: str, **kwargs: Any) -> Any:
        key = (spec, tuple(sorted(kwargs.items())))
        if key not in self._models and self._models:
            self._models.clear()
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:  # pragma: no cover
                pass
        return super().get(spec, **kwargs)


class _Board:
    """A tiny actor the workers tell which job and stage they are in; the driver reads it for the progress bar."""

    def __init__(self) -> None:
        self.status: dict[int, str] = {}
        self.attempts: dict[str, int] = {}

    def start(self, slot: int, job: str, token: str) -> None:
        self.status[slot] = job
        self.attempts[token] = self.attempts.get(token, 0) + 1

    def set(self, slot: int, text: str) -> None:
        self.status[slot] = text

    def snapshot(self) -> tuple[dict[int, str], dict[str, int]]:
        return dict(self.status), dict(self.attempts)


class _Worker:
    """One worker slot: a process that keeps its model between jobs."""

    def __init__(self, slot: int, board: str, threads: int) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, threads))
        self.slot, self.board = slot, ray.get_actor(board)  # by name: nothing in the object store to lose
        self.models = OneModelHolder()

    def run(self, job: Job, token: str) -> JobResult:
        import ray

        ray.get(
            self.board.start.remote(self.slot, job.name, token)
        )  # counted before the job can kill this process

        def report(stage: str) -> None:
            self.board.set.remote(self.slot, f"{job.name}: {stage}")

        res = run_job(job, JobContext(self.models, progress=False, report=report))
        self.board.set.remote(self.slot, "idle")
        return res

    def where(self) -> str:
        return worker_name()


class RayExecutor:
    """Runs jobs in parallel on Ray; same interface and same run directories as ``LocalExecutor``.

    ``address``: None starts a local Ray on this machine (``num_cpus`` CPUs when given), ``"auto"`` joins the
    cluster this machine belongs to (``ray start``), ``"ray://host:10001"`` connects through Ray Client.
    ``workers``: how many jobs run at once (default: as many as the cluster's CPUs and GPUs hold).
    """

    in_process = False
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_job: float = 1.0,
        gpus_per_job: float = 0.0,
        max_retries: int = 2,
        workers: int | None = None,
        num_cpus: int | None = None,
    ) -> None:
        if cpus_per_job <= 0:
            raise UserError(f"--cpus-per-job must be > 0, got {cpus_per_job}")
        if gpus_per_job < 0:
            raise UserError(f"--gpus-per-job must be >= 0, got {gpus_per_job}")
        if max_retries < 0:
            raise UserError(f"--max-retries must be >= 0, got {max_retries}")
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be >= 1, got {workers}")
        self.address, self.cpus, self.gpus = address, float(cpus_per_job), float(gpus_per_job)
        self.max_retries, self.workers, self.num_cpus = max_retries, workers, num_cpus
        self._ray: Any = None
        self._started = False
        self._actors: dict[int, Any] = {}
        self._last_model: dict[int, str | None] = {}
        self._board: Any = None
        self._board_name = ""
        self._runs = 0

    # ---------------------------------------------------------------- cluster
    def _init(self, ray: Any) -> bool:
        """Connect (or start a local Ray); True when this call started it (and so shuts it down after)."""
        if ray.is_initialized():
            return False
        kw: dict = {"include_dashboard": False, "log_to_driver": True}
        if self.address is None:
            if self.num_cpus is not None:
                kw["num_cpus"] = self.num_cpus
        else:
            kw["address"] = self.address
        try:
            ray.init(**kw)
        except ConnectionError as err:
            raise UserError(
                f"cannot reach a Ray cluster at {self.address!r} ({err}); start one with `ray start --head` "
                "or leave out --ray-address for a local Ray"
            ) from None
        return True

    def slots(self, ray: Any, n_jobs: int) -> int:
        """Jobs that can run at once: what the cluster's CPUs (and GPUs) hold, or ``workers``, at most n_jobs."""
        if self.workers is not None:
            return max(1, min(self.workers, n_jobs))
        res = ray.cluster_resources()
        fit = math.floor(res.get("CPU", 1) / self.cpus + 1e-9)
        if self.gpus > 0:
            gpus = res.get("GPU", 0)
            if gpus < self.gpus:
                raise UserError(
                    f"--gpus-per-job {self.gpus:g} but the Ray cluster has {gpus:g} GPUs; "
                    "add GPU nodes or use --gpus-per-job 0"
                )
            fit = min(fit, math.floor(gpus / self.gpus + 1e-9))
        if fit < 1:
            raise UserError(
                f"--cpus-per-job {self.cpus:g} is more than the Ray cluster's {res.get('CPU', 0):g} CPUs"
            )
        return max(1, min(fit, n_jobs))

    def _actor(self, ray: Any, slot: int, board: str) -> Any:
        cls = ray.remote(_Worker)
        return cls.options(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_restarts=self.max_retries,
            max_task_retries=self.max_retries,
        ).remote(slot, board, int(self.cpus))

    # ---------------------------------------------------------------- running
    def run(
        self, jobs: Sequence[Job], *, progress: bool = True, on_result: OnResult | None = None
    ) -> list[JobResult]:
        """Every job (each retried up to ``max_retries`` times if its worker dies), results in the jobs' order.

        The workers (and the models they loaded) stay up for the next ``run`` until ``close()``; a sweep in
        several waves (PAS jobs then the forgetting tests, splice-cost ``raw`` then the layers) loads each
        model once per worker."""
        if not jobs:
            return []
        ray = import_ray()
        if self._ray is None:
            self._started = self._init(ray)
            self._ray = ray
        try:
            return self._run(ray, list(jobs), progress, on_result)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers (and the local Ray, if this executor started it)."""
        ray, self._ray = self._ray, None
        if ray is None:
            return
        for a in self._actors.values():
            ray.kill(a, no_restart=True)
        if self._board is not None:
            ray.kill(self._board, no_restart=True)
        self._actors, self._last_model, self._board = {}, {}, None
        if self._started:
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool(self, ray: Any, n: int) -> None:
        if self._board is None:
            self._board_name = f"steerlab-sweep-board-{uuid.uuid4().hex[:12]}"
            self._board = ray.remote(_Board).options(num_cpus=0, name=self._board_name).remote()
        for slot in range(len(self._actors), n):
            self._actors[slot] = self._actor(ray, slot, self._board_name)
            self._last_model[slot] = None

    def _run(self, ray: Any, jobs: list[Job], progress: bool, on_result: OnResult | None) -> list[JobResult]:
        self._pool(ray, self.slots(ray, len(jobs)))
        actors, last_model, board = self._actors, self._last_model, self._board
        self._runs += 1
        token = [f"{self._runs}:{i}" for i in range(len(jobs))]
        pending = deque(sorted(range(len(jobs)), key=lambda i: (jobs[i].model or "", i)))
        inflight: dict[Any, tuple[int, int]] = {}
        results: dict[int, JobResult] = {}
        bar = tqdm(
            total=len(jobs), desc=f"jobs ({len(actors)} Ray workers)", unit="job", disable=not progress
        )
        lines = [
            tqdm(total=0, position=i + 1, bar_format="{desc}", leave=False, disable=not progress)
            for i in range(min(len(actors), 8))
        ]
        shown = [""] * len(lines)
        idle = list(actors)
        try:
            while pending or inflight:
                while idle and pending:
                    slot = idle.pop(0)
                    i = next((i for i in pending if jobs[i].model == last_model[slot]), pending[0])
                    pending.remove(i)
                    last_model[slot] = jobs[i].model
                    inflight[actors[slot].run.remote(jobs[i], token[i])] = (slot, i)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                status, attempts = ray.get(board.snapshot.remote())
                for ref in ready:
                    slot, i = inflight.pop(ref)
                    job = jobs[i]
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayError as err:  # the worker died more often than max_retries
                        res = JobResult(
                            job.name,
                            job.params,
                            ok=False,
                            error=f"its Ray worker died {attempts.get(token[i], 1)} time(s) "
                            f"({type(err).__name__}); max_retries={self.max_retries}",
                            traceback=str(err),
                        )
                        ray.kill(actors[slot], no_restart=True)
                        actors[slot] = self._actor(ray, slot, self._board_name)
                        last_model[slot] = None
                    res.attempts = attempts.get(token[i], 1)
                    results[i] = res
                    idle.append(slot)
                    bar.update(1)
                    if on_result is not None:
                        on_result(res)
                for k, line in enumerate(lines):
                    text = f"  worker {k}: {status.get(k, 'starting')}"
                    if shown[k] != text:
                        shown[k] = text
                        line.set_description_str(text)
                if not ready:
                    time.sleep(0.05)
        finally:
            for line in lines:
                line.close()
            bar.close()
        return [results[i] for i in range(len(jobs))]
