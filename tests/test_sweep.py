"""Sweeps on the local executor (no Ray needed): job results, failures named with their parameters while the other
jobs finish, resuming that computes nothing, the executor options, and a PAS sweep with a failing job."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import pytest

from steerlab.config import UserError
from steerlab.sweeps import LocalExecutor, SweepError, check_ok, make_executor
from sweep_toys import toy_jobs


def test_local_executor_results_failures_and_resume(tmp_path):
    ex = LocalExecutor()
    res = ex.run(toy_jobs(tmp_path, [1, 2, 3], fail=(2,)), progress=False)
    assert [r.name for r in res] == ["n1", "n2", "n3"]
    assert [r.ok for r in res] == [True, False, True]
    assert res[0].value["results"]["b"]["sum"] == 3 and res[0].value["ran"] == ["a", "b"]
    assert res[2].value["results"]["b"]["sum"] == 7
    bad = res[1]
    assert (
        bad.params == {"n": 2}
        and bad.error == "ValueError: toy failure for n=2"
        and "stage_b" in bad.traceback
    )
    assert (tmp_path / "n2" / "a" / "_DONE.json").is_file()  # what it finished before failing is kept
    with pytest.raises(SweepError, match=r"n2 \(n=2\): ValueError: toy failure for n=2"):
        check_ok(res)
    # resuming: finished jobs compute nothing; the failed one resumes after its finished stage
    again = ex.run(toy_jobs(tmp_path, [1, 2, 3]), progress=False)
    assert [r.value["ran"] for r in again] == [[], ["b"], []]


def test_executor_options_are_checked():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(UserError, match="--ray-address, --gpus-per-job only apply with --executor ray"):
        make_executor("local", address="auto", gpus_per_job=1)
    with pytest.raises(UserError, match="--executor must be one of local, ray"):
        make_executor("slurm")
    with pytest.raises(UserError, match="--cpus-per-job must be > 0"):
        make_executor("ray", cpus_per_job=0)


def test_cli_rejects_ray_options_with_the_local_executor(capsys):
    from steerlab.cli import main

    assert main(["pas", "run", "--gpus-per-job", "1"]) == 2
    assert "--gpus-per-job only apply with --executor ray" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*tokens for this tokenizer")
def test_pas_sweep_failure_names_the_job_and_keeps_the_others(tiny_models, tmp_path):
    from steerlab.pas.config import load_config
    from steerlab.pas.run import run_pas

    src = resources.files("steerlab") / "data/mcq/steerlab_mcq.jsonl"
    gone = tmp_path / "gone.jsonl"
    shutil.copyfile(str(src), gone)
    cfg = load_config(
        None,
        {
            "benchmarks": ["steerlab_mcq", str(gone)],
            "limit": 30,
            "layers": [1],
            "strengths": [1.0],
            "methods": ["PASf"],
            "n_boot": 50,
            "out": str(tmp_path / "out"),
        },
    )
    gone.unlink()  # readable when the sweep was planned, gone when its job runs
    with pytest.raises(
        SweepError, match=r"benchmark=.*gone\.jsonl, seed=42\): DataError: MCQ file .* does not exist"
    ) as err:
        run_pas(cfg, lm=tiny_models("llama"), progress=False)
    assert len(err.value.failures) == 1
    root = tmp_path / "out" / "tiny-llama" / "block"
    report = json.loads((root / "seed_42" / "steerlab_mcq" / "report" / "result.json").read_text())
    assert report["benchmark"] == "steerlab_mcq"  # the other job finished
    assert not (root / "seed_42" / "results.json").exists()  # an incomplete seed gets no tables
    assert not (root / "summary_aggregate.csv").exists()  # and there is no summary over seeds


@pytest.mark.filterwarnings("ignore:.*tokens for this tokenizer")
def test_asa_runs_sweep_writes_each_run_and_a_summary(tiny_models, tmp_path):
    from steerlab.asa.config import AsaConfig
    from steerlab.stages import ModelHolder
    from steerlab.sweeps.asa import asa_jobs, run_asa_sweep

    cfg = AsaConfig(
        limit_per_cell=3,
        strengths=[0.5],
        taus=[0.6],
        betas=[0.0],
        n_top_layers=1,
        extra_layers=[2],
        directions=["global", "asa"],
        baselines=["none"],
        lora_rank=0,  # the sweep's mechanics, not the baselines
        max_new_tokens_call=6,
        n_boot=50,
    )
    models = ModelHolder()
    models.put("tiny", tiny_models("llama"))
    ex = LocalExecutor(models)
    res = run_asa_sweep(cfg, ["tiny"], ["builtin"], tmp_path, ex, progress=False)
    (row,) = res["rows"]
    assert row["model"] == "tiny" and row["data"] == "builtin" and 0 <= row["asa_f1"] <= 1
    run = tmp_path / "tiny" / "builtin"
    assert (run / "report.md").is_file() and (run / "asset" / "_DONE.json").is_file()
    assert (tmp_path / "summary.csv").read_text().splitlines()[0].startswith("model,data,")
    again = ex.run(asa_jobs(cfg, ["tiny"], ["builtin"], tmp_path), progress=False)
    assert again[0].value["ran"] == []  # resuming computes nothing
