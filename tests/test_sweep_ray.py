"""Sweeps on a local Ray with 2 CPUs (skipped without the ``ray`` extra): a Ray sweep writes the same files as a
serial one, byte for byte (PAS: every file; splice cost: every file), except the run's own bookkeeping (the
finish time and seconds in ``_DONE.json``, ``run_log.json``'s seconds and executor); a job that raises is reported
with its parameters while the others finish; a killed worker's job is retried and skips the stages it finished;
resuming computes nothing. One Ray for the module: starting one takes seconds on 2 cores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import sweep_toys  # noqa: E402
from steerlab.sweeps import LocalExecutor, RayExecutor  # noqa: E402
from sweep_toys import toy_jobs  # noqa: E402

BOOKKEEPING = {
    "_DONE.json": ("finished", "seconds", "cpu_seconds", "peak_rss_mb"),
    "run_log.json": ("seconds", "executor"),
}


@pytest.fixture(scope="module")
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sweep_toys)  # the workers cannot import the tests folder
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model saved to disk: workers load it by path, like any model spec."""
    from steerlab.models import tiny_model
    from steerlab.sae.finetune import save_model_dir

    return save_model_dir(tiny_model("llama", n_layers=3), tmp_path_factory.mktemp("m") / "tiny")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (bookkeeping fields removed, the lock file left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == ".lock":
            continue
        data = p.read_bytes().replace(str(root).encode(), b"<out>")  # the config names its own out
        if p.name in BOOKKEEPING:
            obj = json.loads(data)
            for k in BOOKKEEPING[p.name]:
                obj.pop(k, None)
            data = json.dumps(obj, sort_keys=True).encode()
        out[str(p.relative_to(root))] = data
    return out


def _close(x: object, y: object) -> bool:
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_close(u, v) for u, v in zip(x, y))
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= 1e-5 * max(1.0, abs(x), abs(y))
    return x == y


def _float_equal(name: str, x: bytes, y: bytes) -> bool:
    """Equal up to float reductions: a Ray worker runs torch on 1 thread, this process on 2, so sums may differ in
    the last bits (measured: 6e-8 on weights of size 0.56). Tensors and JSON numbers to 1e-5 relative; plots are
    drawn from those numbers."""
    if name.endswith(".png"):
        return True
    if name.endswith(".safetensors"):
        import torch
        from safetensors.torch import load

        ta, tb = load(x), load(y)
        return ta.keys() == tb.keys() and all(torch.allclose(ta[k], tb[k], rtol=1e-5, atol=1e-7) for k in ta)
    if name.endswith(".json"):
        return _close(json.loads(x), json.loads(y))
    return False


def assert_same_tree(a: Path, b: Path, float_tolerance: bool = False) -> None:
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb)
    differ = [k for k in ta if ta[k] != tb[k] and not (float_tolerance and _float_equal(k, ta[k], tb[k]))]
    assert differ == [], f"files that differ between the serial and the Ray run: {differ}"


def test_failures_retries_and_resume(local_ray, tmp_path):
    flag = tmp_path / "killed-once"
    with RayExecutor(max_retries=1) as ex:
        res = ex.run(toy_jobs(tmp_path / "out", [1, 2, 3], fail=(2,), kill_flag=str(flag)), progress=False)
        # resuming: finished jobs compute nothing (the same workers, still up)
        again = ex.run(toy_jobs(tmp_path / "out", [1, 3], kill_flag=str(flag)), progress=False)
    assert [r.value["ran"] for r in again] == [[], []]
    by = {r.name: r for r in res}
    assert [r.name for r in res] == ["n1", "n2", "n3"]  # in the jobs' order
    assert flag.is_file()  # one worker was killed in stage b ...
    killed = [r for r in res if r.attempts == 2]
    assert len(killed) == 1 and killed[0].ok and killed[0].value["ran"] == ["b"]  # ... retried, stage a kept
    assert by["n2"].ok is False and by["n2"].params == {"n": 2}
    assert by["n2"].error == "ValueError: toy failure for n=2"
    ok = [r for r in res if r.ok]
    assert sorted(r.value["results"]["b"]["sum"] for r in ok) == [3, 7]
    # a worker that keeps dying is reported once its retries are spent; the other jobs finish
    with RayExecutor(max_retries=0) as ex:
        res = ex.run(toy_jobs(tmp_path / "out2", [4, 5], kill_flag=str(tmp_path / "flag2")), progress=False)
    assert sum(r.ok for r in res) == 1
    (dead,) = [r for r in res if not r.ok]
    assert "Ray worker died 1 time(s)" in dead.error and dead.params in ({"n": 4}, {"n": 5})


@pytest.mark.filterwarnings("ignore:.*tokens for this tokenizer")
def test_pas_sweep_on_ray_equals_serial(local_ray, model_dir, tmp_path):
    from steerlab.pas.config import load_config
    from steerlab.pas.run import run_pas

    def cfg(out: Path):  # noqa: ANN202
        return load_config(
            None,
            {
                "model": str(model_dir),
                "device": "cpu",
                "limit": 30,
                "layers": [1, 2],
                "strengths": [1.0],
                "methods": ["PASf", "iPASwo"],
                "seeds": [7],  # 2 jobs: seeds 42 and 7
                "n_boot": 50,
                "catastrophic_test": True,  # and a second wave: the forgetting test per seed
                "target_benchmark": "steerlab_mcq",
                "out": str(out),
            },
        )

    serial = run_pas(cfg(tmp_path / "serial"), progress=False, executor=LocalExecutor())
    with RayExecutor(max_retries=0) as ex:
        on_ray = run_pas(cfg(tmp_path / "ray"), progress=False, executor=ex)
    assert serial["aggregate"] == on_ray["aggregate"] and serial["summary"] == on_ray["summary"]
    assert_same_tree(tmp_path / "serial", tmp_path / "ray")
    root = Path(on_ray["root"])
    assert (root / "summary_aggregate.csv").read_bytes() == (
        Path(serial["root"]) / "summary_aggregate.csv"
    ).read_bytes()
    assert json.loads((root / "seed_7" / "run_log.json").read_text())["executor"] == "ray"
    assert "forgetting" in json.loads((root / "seed_7" / "results.json").read_text())
    # resuming on Ray computes nothing
    before = {p: p.stat().st_mtime_ns for p in root.rglob("_DONE.json")}
    with RayExecutor(max_retries=0) as ex:
        run_pas(cfg(tmp_path / "ray"), progress=False, executor=ex)
    assert before == {p: p.stat().st_mtime_ns for p in root.rglob("_DONE.json")}


def test_splice_cost_on_ray_equals_serial(local_ray, model_dir, tmp_path):
    from steerlab.sae.config import SpliceCostConfig
    from steerlab.sweeps.splice_cost import run_splice_cost

    def cfg(out: Path) -> SpliceCostConfig:
        return SpliceCostConfig(
            model=str(model_dir),
            device="cpu",
            out=str(out),
            layers=[0, 2],
            d_sae=32,
            k=4,
            steps=10,
            batch_size=64,
            n_train=12,
            n_eval=4,
        )

    run_splice_cost(cfg(tmp_path / "serial"), LocalExecutor(), progress=False)
    with RayExecutor(max_retries=0) as ex:
        r = run_splice_cost(cfg(tmp_path / "ray"), ex, progress=False)
        assert r.ran == ["report"]  # the driver computed only the report; raw and the layers ran on workers
        assert not (tmp_path / "ray" / ".sweep").exists()  # the scratch run directories are gone
        assert_same_tree(tmp_path / "serial", tmp_path / "ray", float_tolerance=True)
        again = run_splice_cost(cfg(tmp_path / "ray"), ex, progress=False)
        assert again.ran == []  # nothing left to do: no job is even submitted
