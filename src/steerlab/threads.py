"""How many threads torch's intra-op pool gets: the cores actually free, at most the physical cores.

Why: torch starts one intra-op thread per logical core. When another process keeps one of those cores busy, every
parallel region waits at an OpenMP barrier for the thread that was descheduled, and generation on a 2-core machine
with one other busy process ran about 24x slower with 2 threads than with 1. The command line therefore picks the
count once at start (``apply``), from the cores this process may run on (``os.sched_getaffinity``), the physical
cores (hyper-threads share one core's matrix units) and the cores other processes kept busy over a short window
(``/proc/stat``; the 1-minute load average where that file does not exist). An explicit choice always wins: the
``--threads`` option, or ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the environment (torch read them already).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .base import UserError

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count and why (``source``: 'option', 'env' or 'auto')."""

    threads: int
    source: str
    usable_cores: int
    physical_cores: int
    busy_cores: float | None

    def describe(self) -> str:
        if self.source == "option":
            return f"{self.threads} torch thread(s) (--threads)"
        if self.source == "env":
            return f"{self.threads} torch thread(s) (from the environment: {_env_setting()})"
        busy = "unknown" if self.busy_cores is None else f"{self.busy_cores:.1f}"
        return (
            f"{self.threads} torch thread(s) (auto: {self.usable_cores} usable core(s), {self.physical_cores} "
            f"physical, {busy} busy with other work; --threads N to choose)"
        )

    def as_dict(self) -> dict:
        return {
            "threads": self.threads,
            "source": self.source,
            "usable_cores": self.usable_cores,
            "physical_cores": self.physical_cores,
            "busy_cores": None if self.busy_cores is None else round(self.busy_cores, 2),
        }


def usable_cores() -> int:
    """Logical cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def physical_cores(cpuinfo: str | None = None) -> int:
    """Distinct (package, core) pairs in /proc/cpuinfo; the logical count where that cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return max(1, os.cpu_count() or 1)
    cores, package, core = set(), None, None
    for line in [*cpuinfo.splitlines(), ""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not key:  # end of one processor's block
            if core is not None:
                cores.add((package, core))
            package, core = None, None
    return len(cores) if cores else max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies summed over all CPUs, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu":
        return None
    vals = [float(x) for x in first[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)  # idle + iowait
    return sum(vals) - idle, sum(vals)


def busy_cores(window: float = 0.25) -> float | None:
    """Cores kept busy by other work (this process is idle while it measures): the busy share of all CPUs over
    ``window`` seconds times their number; the 1-minute load average where /proc/stat is missing."""
    a = _cpu_times()
    if a is None:
        try:
            return float(os.getloadavg()[0])
        except (AttributeError, OSError):
            return None
    time.sleep(window)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def auto_threads(usable: int, physical: int, busy: float | None) -> int:
    """min(physical cores, usable cores not busy), at least 1; a core counts as busy from half its time on."""
    free = usable if busy is None else usable - int(busy + 0.5)
    return max(1, min(physical, usable, free))


def _env_setting() -> str:
    return ", ".join(f"{k}={os.environ[k]}" for k in ENV_VARS if os.environ.get(k))


def choose(requested: int | None = None, window: float = 0.25) -> ThreadChoice:
    """The thread count ``apply`` would set (see the module docstring for the order of precedence)."""
    usable, physical = usable_cores(), physical_cores()
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise UserError(f"--threads must be an integer >= 1, got {requested!r}")
        return ThreadChoice(requested, "option", usable, physical, None)
    env = next((os.environ[k] for k in ENV_VARS if os.environ.get(k)), None)
    if env is not None:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return ThreadChoice(n, "env", usable, physical, None)
    busy = busy_cores(window)
    return ThreadChoice(auto_threads(usable, physical, busy), "auto", usable, physical, busy)


_APPLIED: ThreadChoice | None = None


def apply(requested: int | None = None) -> ThreadChoice:
    """Choose the count and give it to torch's intra-op pool (once per process; later calls return the choice)."""
    global _APPLIED
    if _APPLIED is not None and requested in (None, _APPLIED.threads):
        return _APPLIED
    choice = choose(requested)
    import torch

    torch.set_num_threads(choice.threads)
    _APPLIED = choice
    return choice


def applied() -> ThreadChoice | None:
    """The choice ``apply`` made in this process, if any."""
    return _APPLIED
