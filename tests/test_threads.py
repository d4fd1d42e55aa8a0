"""torch's intra-op threads: the cores not busy with other work, at most the physical ones; an explicit choice wins."""

import pytest
import torch

from steerlab import threads
from steerlab.cli import build_parser, main

CPUINFO_HT = "\n\n".join(
    f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i % 2}\nsiblings\t: 4" for i in range(4)
)


def test_physical_cores_counts_distinct_cores_not_hyperthreads():
    assert threads.physical_cores(CPUINFO_HT) == 2
    two_sockets = CPUINFO_HT + "\n\n" + CPUINFO_HT.replace("physical id\t: 0", "physical id\t: 1")
    assert threads.physical_cores(two_sockets) == 4


@pytest.mark.parametrize(
    "usable,physical,busy,expected",
    [
        (2, 2, 0.0, 2),  # idle 2-core machine: both cores
        (2, 2, 1.0, 1),  # one other busy process: one thread, not two that wait for each other
        (2, 2, 2.3, 1),  # fully loaded: still one
        (8, 4, 0.2, 4),  # hyper-threads do not count
        (8, 8, 3.4, 5),  # busy 3.4 cores: 3 taken, 5 free
        (4, 4, None, 4),  # load unknown: the usable cores
    ],
)
def test_auto_threads(usable, physical, busy, expected):
    assert threads.auto_threads(usable, physical, busy) == expected


def test_an_explicit_choice_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose(2).threads == 2 and threads.choose(2).source == "option"
    env = threads.choose()
    assert (env.threads, env.source) == (3, "env") and "OMP_NUM_THREADS=3" in env.describe()
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    auto = threads.choose(window=0.05)
    assert auto.source == "auto" and 1 <= auto.threads <= auto.physical_cores
    with pytest.raises(ValueError, match="--threads must be an integer >= 1, got 0"):
        threads.choose(0)


def test_cli_threads_option_after_any_command(monkeypatch, capsys):
    args = build_parser().parse_args(["asa", "status", "--threads", "1"])
    assert args.threads == 1
    assert build_parser().parse_args(["--threads", "2", "asa", "status"]).threads == 2
    assert main(["--threads", "0", "asa", "status"]) == 2
    assert "--threads must be an integer >= 1, got 0" in capsys.readouterr().err
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_APPLIED", None)
    try:
        assert threads.apply(1).threads == 1 and torch.get_num_threads() == 1
        assert threads.applied().source == "option"
    finally:
        torch.set_num_threads(before)
