"""The stage runner: keys follow exactly what each stage reads, runs are atomic, resumable and exclusive."""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from steerlab.config import Config, UserError, opt
from steerlab.stages import Runner, Stage


@dataclass
class Toy(Config):
    a: int = opt(1, "read by first")
    b: float = opt(0.5, "read by second")
    c: str = opt("x", "read by third")
    d: int = opt(0, "read by nobody")


CALLS: list[str] = []


def _first(ctx):
    CALLS.append("first")
    (ctx.out / "a.txt").write_text(str(ctx.config.a))
    return {"a": ctx.config.a}


def _second(ctx):
    CALLS.append("second")
    a = int((ctx.path("first") / "a.txt").read_text())
    return {"ab": a * ctx.config.b}


def _third(ctx):
    CALLS.append("third")
    return {"ab": ctx.result("second")["ab"], "c": ctx.config.c}


def _other(ctx):
    CALLS.append("other")
    return {"c": ctx.config.c}


STAGES = [
    Stage("first", _first, reads=("a",)),
    Stage("second", _second, reads=("b",), after=("first",)),
    Stage("third", _third, reads=("c",), after=("second",)),
    Stage("other", _other, reads=("c",)),
]


def _run(cfg, root):
    CALLS.clear()
    r = Runner(STAGES, cfg, root, progress=False)
    r.run_all()
    return list(CALLS), r


def test_a_changed_field_reruns_exactly_its_readers_and_their_dependants(tmp_path):
    ran, r = _run(Toy(), tmp_path)
    assert ran == ["first", "second", "third", "other"]
    assert r.result("third") == {"ab": 0.5, "c": "x"}
    assert _run(Toy(), tmp_path)[0] == []  # all done
    assert _run(Toy(d=7), tmp_path)[0] == []  # nobody reads d
    assert _run(Toy(d=7, b=2.0), tmp_path)[0] == ["second", "third"]
    assert _run(Toy(d=7, b=2.0, c="y"), tmp_path)[0] == ["third", "other"]
    assert _run(Toy(d=7, b=2.0, c="y", a=3), tmp_path)[0] == ["first", "second", "third"]
    _, r = _run(Toy(d=7, b=2.0, c="y", a=3), tmp_path)
    assert r.result("third") == {"ab": 6.0, "c": "y"}
    done = json.loads((tmp_path / "second" / "_DONE.json").read_text())
    assert done["params"]["fields"] == {"b": 2.0} and set(done["params"]["after"]) == {"first"}


def test_reading_an_undeclared_field_or_stage_fails(tmp_path):
    def sneaky(ctx):
        return ctx.config.d

    with pytest.raises(RuntimeError, match="without declaring it"):
        Runner([Stage("s", sneaky, reads=("a",))], Toy(), tmp_path).run("s")
    with pytest.raises(RuntimeError, match="reads stage 'first' without declaring"):
        Runner([STAGES[0], Stage("s", lambda ctx: ctx.path("first"))], Toy(), tmp_path).run("s")
    with pytest.raises(ValueError, match="unknown config fields"):
        Runner([Stage("s", sneaky, reads=("zzz",))], Toy(), tmp_path)
    with pytest.raises(UserError, match="unknown stage 'nope'"):
        Runner(STAGES, Toy(), tmp_path).run("nope")


def test_a_failing_stage_leaves_nothing_that_looks_finished(tmp_path):
    def slow_then_fail(ctx):
        (ctx.out / "partial.txt").write_text("half")
        raise KeyError("boom")

    r = Runner([Stage("s", slow_then_fail)], Toy(), tmp_path)
    with pytest.raises(KeyError):
        r.run("s")
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.tmp-*"))
    assert r.status() == [
        {"stage": "s", "state": "missing", "seconds": None, "cpu_seconds": None, "peak_rss_mb": None}
    ]


def test_seconds_are_the_stage_computing(tmp_path):
    def sleepy(ctx):
        time.sleep(0.3)
        return {}

    r = Runner([Stage("s", sleepy)], Toy(), tmp_path)
    r.run("s")
    assert r.marker("s")["seconds"] >= 0.3


def test_second_process_gets_a_clear_error_and_orphans_are_cleaned(tmp_path):
    (tmp_path / ".first.tmp-killed").mkdir(parents=True)
    (tmp_path / ".report.tmp-killed.md").write_text("half")  # a file an atomic write left when killed
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'pid %d' % os.getpid())\n"
            "print('locked', flush=True)\n"
            "time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(UserError, match=f"in use by pid {holder.pid}"):
            Runner(STAGES, Toy(), tmp_path).run("first")
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".first.tmp-killed").exists()  # nobody held the lock to clean it
    Runner(STAGES, Toy(), tmp_path).run("first")
    assert not (tmp_path / ".first.tmp-killed").exists()
    assert not (tmp_path / ".report.tmp-killed.md").exists()
    assert os.path.exists(tmp_path / "first" / "_DONE.json")


@dataclass
class Sliced(Config):
    """A config with what PAS's has: a method that calls a static method (layers as a Python slice)."""

    layers: str = opt("10:25:7", "a slice of the model's layers")

    @staticmethod
    def _parse_slice(text: str) -> slice:
        return slice(*(int(p) if p else None for p in text.split(":")))

    def layer_list(self, n_layers: int) -> list[int]:
        return list(range(n_layers))[self._parse_slice(self.layers)]


def test_a_config_method_that_calls_a_static_method_works_through_the_stage_view():
    """A stage's view binds config methods to itself; static methods must stay unbound (a PAS run with
    ``layers: '10:25:7'`` failed with 'takes 1 positional argument but 2 were given')."""
    from steerlab.stages import ConfigView

    view = ConfigView(Sliced(), {"layers"}, "vectors")
    assert view.layer_list(30) == [10, 17, 24]
    assert view._parse_slice("1:3") == slice(1, 3, None)
    with pytest.raises(RuntimeError, match="without declaring it"):
        ConfigView(Sliced(), set(), "vectors").layer_list(30)  # the method's read is checked like any other
