"""The one stage runner behind every method: resumable, atomic, keyed by exactly what each stage reads.

A ``Stage`` declares the config fields it reads and the stages it needs. Its key is its own fields' values plus
the keys of its inputs, so changing a field reruns exactly the stages that read it and their dependants, nothing
else. A stage reading a field it did not declare fails (the key would be wrong otherwise). Each stage writes into a
temporary directory renamed to ``root/<stage>/`` when complete, with ``_DONE.json`` holding its key, parameters and
the seconds it computed for; a killed run never leaves a stage that looks finished. One process at a time works in
a run directory (a lock names the other one), and temporary folders left by a killed run are removed on resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import logging
import os
import shutil
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, UserError
from .runs import TMP_TAG, _jsonable, atomic_dir, load_json, save_json

log = logging.getLogger(__name__)
DONE = "_DONE.json"
RESULT = "result.json"
MODEL_FIELDS = ("model", "dtype", "quantization")  # what a stage that uses the model reads implicitly


@dataclass(frozen=True)
class Stage:
    """One step of a method: ``run(ctx)`` writes files under ``ctx.out`` and returns a JSON-able summary."""

    name: str
    run: Callable[[StageContext], Any]
    reads: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    uses_model: bool = False
    doc: str = ""
    knobs: tuple[str, ...] = ()  # fields read that cannot change the result (batch size): not in the key


class ConfigView:
    """The fields a stage declared, and nothing else."""

    def __init__(self, config: Config, allowed: set[str], stage: str) -> None:
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_stage", stage)

    def __getattr__(self, name: str) -> Any:
        config = self._config
        if name in config.field_names():
            if name not in self._allowed:
                raise RuntimeError(
                    f"stage {self._stage!r} read config field {name!r} without declaring it in Stage.reads "
                    f"(declared: {sorted(self._allowed)}); its key would not change with that field"
                )
            return getattr(config, name)
        raw = inspect.getattr_static(type(config), name, None)
        if isinstance(raw, (staticmethod, classmethod)):  # unbound: reads no field through the view
            return getattr(config, name)
        attr = getattr(type(config), name, None)
        if callable(attr) and not isinstance(
            attr, type
        ):  # a config method reads fields through this view too
            return types.MethodType(attr, self)
        return getattr(config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a stage cannot change the config")


class ModelHolder:
    """Models loaded on first use and kept for the rest of the run (one per spec)."""

    def __init__(self, loader: Callable[..., Any] | None = None) -> None:
        self._loader = loader
        self._models: dict[tuple, Any] = {}
        self._pinned: dict[str, Any] = {}

    def get(self, spec: str, **kwargs: Any) -> Any:
        if spec in self._pinned:
            return self._pinned[spec]
        key = (spec, tuple(sorted(kwargs.items())))
        if key not in self._models:
            loader = self._loader
            if loader is None:
                from .models import load_model as loader
            self._models[key] = loader(spec, **kwargs)
        return self._models[key]

    def put(self, spec: str, lm: Any) -> None:
        """Use an already loaded model whenever ``spec`` is asked for (e.g. a tiny model in tests)."""
        self._pinned[spec] = lm

    def prefix_stats(self) -> dict[str, float]:
        """The shared-prefix caches the held models computed and reused so far (``models.prefix.prefix_cache``)."""
        total: dict[str, float] = {}
        for lm in {id(m): m for m in [*self._pinned.values(), *self._models.values()]}.values():
            memo = getattr(lm, "_prefixes", None)
            for k, v in (memo.stats() if hasattr(memo, "stats") else {}).items():
                total[k] = total.get(k, 0) + v
        return total


class StageContext:
    """What a running stage sees: its output folder, its config fields, its inputs, the model."""

    def __init__(self, runner: Runner, stage: Stage, out: Path) -> None:
        self.runner, self.stage, self.out = runner, stage, out
        allowed = set(stage.reads) | set(stage.knobs) | (set(MODEL_FIELDS) if stage.uses_model else set())
        self.config = ConfigView(runner.config, allowed, stage.name)
        self.progress = runner.progress

    @property
    def lm(self) -> Any:
        if not self.stage.uses_model:
            raise RuntimeError(f"stage {self.stage.name!r} uses the model without declaring uses_model=True")
        return self.runner.model()

    def path(self, stage: str) -> Path:
        """The folder of a finished stage this one depends on."""
        if stage not in self.runner.upstream(self.stage.name):
            raise RuntimeError(
                f"stage {self.stage.name!r} reads stage {stage!r} without declaring it in after"
            )
        return self.runner.path(stage)

    def result(self, stage: str) -> Any:
        return load_json(self.path(stage) / RESULT)


class Runner:
    """Runs a method's stages under ``root``; see the module docstring."""

    def __init__(
        self,
        stages: Sequence[Stage],
        config: Config,
        root: str | Path,
        *,
        progress: bool = True,
        models: ModelHolder | None = None,
    ) -> None:
        self.stages = {s.name: s for s in stages}
        if len(self.stages) != len(stages):
            raise ValueError("stage names must be unique")
        fields = set(config.field_names())
        for s in stages:
            for dep in s.after:
                if dep not in self.stages:
                    raise ValueError(f"stage {s.name!r} depends on unknown stage {dep!r}")
            unknown = [f for f in (*s.reads, *s.knobs) if f not in fields]
            if unknown:
                raise ValueError(f"stage {s.name!r} reads unknown config fields {unknown}")
        self.config, self.root, self.progress = config, Path(root), progress
        self.models = models or ModelHolder()
        self.ran: list[str] = []  # stages computed (not skipped) by this runner, in order
        self._lock: int | None = None

    # ---------------------------------------------------------------- keys
    def upstream(self, name: str) -> list[str]:
        """Every stage ``name`` depends on, directly or not, in an order that runs dependencies first."""
        self._stage(name)
        seen: list[str] = []

        def visit(n: str, path: tuple[str, ...]) -> None:
            for dep in self.stages[n].after:
                if dep in path:
                    raise ValueError(f"stage dependencies form a cycle: {' -> '.join((*path, dep))}")
                visit(dep, (*path, dep))
                if dep not in seen:
                    seen.append(dep)

        visit(name, (name,))
        return seen

    def params(self, name: str) -> dict:
        """What stage ``name``'s result depends on: its declared fields' values and its inputs' keys."""
        s = self._stage(name)
        reads = sorted(
            set(s.reads) | (set(MODEL_FIELDS) & set(self.config.field_names()) if s.uses_model else set())
        )
        values = {f: getattr(self.config, f) for f in reads}
        return {
            "fields": json.loads(json.dumps(values, default=_jsonable)),
            "after": {dep: self.key(dep) for dep in s.after},
        }

    def key(self, name: str) -> str:
        blob = json.dumps(self.params(name), sort_keys=True)
        return hashlib.sha256(f"{name}|{blob}".encode()).hexdigest()[:16]

    # ---------------------------------------------------------------- state
    def path(self, name: str) -> Path:
        return self.root / self._stage(name).name

    def marker(self, name: str) -> dict | None:
        f = self.path(name) / DONE
        try:
            return json.loads(f.read_text()) if f.is_file() else None
        except (OSError, json.JSONDecodeError):
            return None

    def is_done(self, name: str) -> bool:
        m = self.marker(name)
        return m is not None and m.get("key") == self.key(name)

    def result(self, name: str) -> Any:
        if not self.is_done(name):
            raise UserError(f"stage {name!r} has not finished in {self.root} with this config; run it first")
        return load_json(self.path(name) / RESULT)

    def status(self) -> list[dict]:
        out = []
        for name in self.stages:
            m = self.marker(name)
            state = "done" if self.is_done(name) else ("stale" if m else "missing")
            m = m or {}
            out.append(
                {
                    "stage": name,
                    "state": state,
                    "seconds": m.get("seconds"),
                    "cpu_seconds": m.get("cpu_seconds"),
                    "peak_rss_mb": m.get("peak_rss_mb"),
                }
            )
        return out

    # ---------------------------------------------------------------- running
    def model(self) -> Any:
        c = self.config
        kw = {k: getattr(c, k) for k in ("device", "dtype", "quantization") if hasattr(c, k)}
        return self.models.get(c.model, **kw)

    def run(self, name: str, force: bool = False) -> Any:
        """Run ``name`` (and whatever it needs that is not done); a finished stage with the same key is skipped."""
        with self.locked():
            for dep in self.upstream(name):
                if not self.is_done(dep):
                    self._compute(dep)
            if force or not self.is_done(name):
                self._compute(name)
            return load_json(self.path(name) / RESULT)

    def run_all(self, until: str | None = None) -> Any:
        """Every stage (up to and including ``until``), in dependency order."""
        names = list(self.stages)
        if until is not None:
            self._stage(until)
            names = [*self.upstream(until), until]
        result = None
        for n in names:
            result = self.run(n)
        return result

    def _compute(self, name: str) -> None:
        s = self._stage(name)
        log.info("stage %s: computing", name)
        with atomic_dir(self.path(name)) as tmp:
            reset_peak_rss()
            prefixes = self.models.prefix_stats()
            t0, c0 = time.perf_counter(), time.process_time()
            result = s.run(StageContext(self, s, tmp))
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            prefixes = {k: round(v - prefixes.get(k, 0), 3) for k, v in self.models.prefix_stats().items()}
            peak = peak_rss_mb()
            release_memory()
            save_json(tmp / RESULT, result if result is not None else {})
            save_json(
                tmp / DONE,
                {
                    "stage": name,
                    "key": self.key(name),
                    "params": self.params(name),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seconds": round(seconds, 2),
                    "cpu_seconds": round(cpu, 2),  # with one thread, about its wall time on an idle machine
                    "peak_rss_mb": peak,
                    # shared prefixes this stage computed, and those it reused from earlier calls and stages
                    **({"prefix_cache": prefixes} if any(prefixes.values()) else {}),
                    "steerlab_version": __version__,
                },
            )
        self.ran.append(name)

    def _stage(self, name: str) -> Stage:
        if name not in self.stages:
            raise UserError(f"unknown stage {name!r}; valid: {', '.join(self.stages)}")
        return self.stages[name]

    # ---------------------------------------------------------------- the lock
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run directory's lock (re-entrant within this runner); clean a killed run's temporary folders."""
        if self._lock is not None:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{self.root} is in use by {other}; wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        self._lock = fd
        try:
            for orphan in [*self.root.glob(f".*{TMP_TAG}*"), *self.root.glob(".*.old-*")]:
                if orphan.is_dir():
                    shutil.rmtree(orphan, ignore_errors=True)
                else:  # a file a killed atomic write left (steerlab.base.files)
                    orphan.unlink(missing_ok=True)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._lock = None


def recorded_fields(root: str | Path) -> dict:
    """The config values a run directory's finished stages were computed with, from their ``_DONE.json`` (a
    field read by several stages takes the most recently finished one's value): what ``status`` compares with,
    so a run's flags need not be repeated to see which of its stages are done."""
    markers = []
    for done in Path(root).glob(f"*/{DONE}"):
        try:
            markers.append((done.stat().st_mtime, json.loads(done.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    out: dict = {}
    for _, m in sorted(markers, key=lambda x: x[0]):
        fields = (m.get("params") or {}).get("fields") if isinstance(m, dict) else None
        if isinstance(fields, dict):
            out.update(fields)
    return out


def status_root(root: str | Path, command: str) -> Path:
    """The run directory ``status`` reports on, or a UserError when there is none (not "every stage missing")."""
    path = Path(root)
    if not path.is_dir():
        raise UserError(
            f"no run directory {path}: nothing has run there (give the run's --out, or start it with "
            f"`{command} --out {path}`)"
        )
    return path


def reset_peak_rss() -> bool:
    """Start a new peak-memory window for this process (Linux: ``/proc/self/clear_refs``); False where not possible
    (then ``peak_rss_mb`` is the process's peak so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    """Hand memory freed by a stage back to the system (glibc keeps freed heap pages otherwise, so the next stage's
    peak would start from this one's); a no-op elsewhere."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_mb() -> float | None:
    """The process's peak resident memory (MB) since the last ``reset_peak_rss`` (or since it started)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
        return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except (ImportError, OSError):
        return None
