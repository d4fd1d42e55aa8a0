import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from steerlab.config import UserError
from steerlab.pas.baselines import leak_report, letter_prior_baseline, majority_letter_baseline
from steerlab.pas.config import load_config, steer_target_to_site
from steerlab.pas.mcq import MCQItem, format_mcq_prompt, load_builtin_mcq, load_mcq_jsonl, shuffle_options
from steerlab.pas.run import run_pas
from steerlab.pas.stages import score


def _synthetic(n=120):
    return [MCQItem(f"q{i}", f"Question number {i}?", ("w1", "right", "w2", "w3"), 1) for i in range(n)]


def test_builtin_mcq_is_valid():
    items = load_builtin_mcq()
    assert len(items) >= 300 and len({it.question for it in items}) == len(items)
    assert len({it.subject for it in items}) >= 6
    assert all(0 <= it.answer < len(it.choices) for it in items)


def test_shuffle_is_per_question_and_follows_the_answer():
    items = _synthetic()
    shuffled = [shuffle_options(it, 42) for it in items]
    assert shuffled == [shuffle_options(it, 42) for it in items]  # deterministic
    assert all(s.choices[s.answer] == "right" for s in shuffled)
    positions = Counter(s.answer for s in shuffled)
    assert len(positions) == 4 and max(positions.values()) < 0.4 * len(items)  # not constant, roughly uniform
    assert [s.answer for s in shuffled] != [shuffle_options(it, 7).answer for it in items]


def test_planted_letter_leak_is_revealed():
    # the reference's bug: reseeding with the same seed per question gives every question the same order
    items = _synthetic()
    leaked = []
    for it in items:
        order = list(range(4))
        random.Random(0).shuffle(order)
        leaked.append(MCQItem(it.id, it.question, tuple(it.choices[i] for i in order), order.index(1)))
    report = leak_report(leaked)
    assert report.leaked and report.max_share == 1.0 and "leak" in report.message
    letter, acc = majority_letter_baseline(leaked[:60], leaked[60:])
    assert acc == 1.0 and letter == leaked[0].gold_letter
    assert max(letter_prior_baseline(leaked).values()) == 1.0
    fair = [shuffle_options(it, 42) for it in load_builtin_mcq()]
    assert not leak_report(fair).leaked
    assert majority_letter_baseline(fair[:150], fair[150:])[1] < 0.4


def test_prompt_format_exact():
    it = MCQItem("x", "What is 2+2?", ("3", "4"), 1)
    assert format_mcq_prompt(it) == "What is 2+2?\nA: 3\nB: 4\nRespond with a single letter.\nAnswer:"
    assert format_mcq_prompt(it, "B: 4").endswith("Answer: B: 4")


def test_config_errors_and_overrides(tmp_path):
    with pytest.raises(UserError, match="did you mean 'seed'"):
        load_config(None, {"sed": 1})
    with pytest.raises(UserError, match=r"strengths\[0\] must be a number, got 'big'"):
        load_config(None, {"steer_strengths": "big"})
    with pytest.raises(UserError, match="sum to 1"):
        load_config(None, {"n_train_proportion": 0.9})
    with pytest.raises(UserError, match=r"unknown method\(s\) \['PASx'\]"):
        load_config(None, {"methods": ["PASx"]})
    with pytest.raises(UserError, match="must be a finite number"):
        load_config(None, {"strengths": [0.1, float("nan")]})
    # command-line strings, typed by the config; the PAS paper's key names still work
    cfg = load_config(
        None, {"seed": "7", "methods": "PASf,iPASwo", "steer_strengths": "0.1,0.2", "layers_to_try": "4:20:4"}
    )
    assert cfg.seed == 7 and cfg.methods == ["PASf", "iPASwo"] and cfg.strengths == [0.1, 0.2]
    assert cfg.layer_list(30) == [4, 8, 12, 16] and cfg.site == "block"
    assert load_config(None, {"steer_target": "post_attention_layernorm"}).site == "mlp_in"
    assert steer_target_to_site("post_attention_layernorm") == "mlp_in"
    with pytest.raises(UserError, match="layers \\[40\\] out of range"):
        load_config(None, {"layers": [40]}).layer_list(30)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 5}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: answer must be an index 0..1"):
        load_mcq_jsonl(bad)


@pytest.mark.filterwarnings("ignore:.*tokens for this tokenizer")
def test_scoring_batched_equals_one_at_a_time(tiny_models):
    lm = tiny_models("llama")
    items = [shuffle_options(it, 1) for it in load_builtin_mcq()[:9]]
    batched = score(lm, items, {"base": None}, batch_size=4)["base"]
    single = np.array([score(lm, [it], {"base": None})["base"][0] for it in items])
    assert np.array_equal(batched, single)


@pytest.mark.filterwarnings("ignore:.*tokens for this tokenizer")
def test_tiny_end_to_end(tiny_models, tmp_path):
    cfg = load_config(
        None,
        {
            "max_sample_size": 60,
            "layers_to_try": [1, 2],
            "steer_strengths": [0.5, 1.0],
            "output_dir": str(tmp_path),
            "icl_k": 1,
            "n_boot": 100,
        },
    )
    lm = tiny_models("llama")
    out = run_pas(cfg, lm=lm, progress=False)
    seed_dir = tmp_path / "tiny-llama" / "block" / "seed_42"
    res = json.loads((seed_dir / "results.json").read_text())["steerlab_mcq"]
    for m in ("PASf", "iPASa", "iPASwo"):
        t = res["methods"][m]["test"]
        assert t["zero"]["accuracy"][0] == res["unsteered"]["test"]  # strength 0 = the plain model
        assert set(t) == {"steered", "zero", "negative", "random0"}
        assert "icl" in res["methods"][m]
    for f in ("cross_benchmark_summary.csv", "cross_benchmark_flips.csv", "run_log.json", "results.json"):
        assert (seed_dir / f).is_file()
    job = seed_dir / "steerlab_mcq"
    for f in ("report/heatmap_PASf.png", "report/test.png", "report/predictions_unsteered.csv"):
        assert (job / f).is_file()
    assert len(out["summary"]) == 3
    # resumable: a second run computes nothing; new strengths redo the sweep and what follows, not the vectors
    before = {p: (job / p / "_DONE.json").stat().st_mtime_ns for p in ("data", "score", "vectors", "sweep")}
    run_pas(cfg, lm=lm, progress=False)
    assert before == {p: (job / p / "_DONE.json").stat().st_mtime_ns for p in before}
    run_pas(cfg.replace(strengths=[0.25, 1.0]), lm=lm, progress=False)
    after = {p: (job / p / "_DONE.json").stat().st_mtime_ns for p in before}
    assert [p for p in before if before[p] != after[p]] == ["sweep"]


@pytest.mark.filterwarnings("ignore:.*tokens for this tokenizer")
def test_a_stage_command_brings_each_job_to_that_stage_only(tiny_models, tmp_path):
    """`steerlab pas score` (run_pas_stage): every (benchmark, seed) job reaches its score stage and stops there."""
    from steerlab.pas.run import run_pas_stage

    cfg = load_config(None, {"max_sample_size": 40, "output_dir": str(tmp_path), "seeds": [7]})
    out = run_pas_stage(cfg, "score", lm=tiny_models("llama"), progress=False)
    assert sorted(out["jobs"]) == ["seed_42/steerlab_mcq", "seed_7/steerlab_mcq"]
    for path in out["jobs"].values():
        job = Path(path).parent
        assert (job / "score" / "_DONE.json").is_file() and (job / "data" / "_DONE.json").is_file()
        assert not (job / "vectors").exists()
    assert not (Path(out["root"]) / "summary_seeds.csv").exists()  # nothing aggregated


def test_multi_seed_aggregate_exact():
    from steerlab.pas.run import aggregate_seeds

    rows = [
        {"benchmark": "b", "method": "PASf", "unsteered": 0.5, "steered": 0.6, "majority_letter": 0.3},
        {"benchmark": "b", "method": "PASf", "unsteered": 0.5, "steered": 0.8, "majority_letter": 0.3},
    ]
    (agg,) = aggregate_seeds(rows)
    assert agg["n_seeds"] == 2 and agg["steered_mean"] == pytest.approx(0.7)
    assert agg["gain_mean"] == pytest.approx(0.2) and agg["gain_sd"] == pytest.approx(0.1414213, abs=1e-6)


def test_quantization_errors_are_clear():
    from steerlab.models import load_model

    with pytest.raises(ValueError, match="quantization must be None, '4bit' or '8bit', got '3bit'"):
        load_model("smollm2-135m", quantization="3bit")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        load_model("smollm2-135m", device="cpu", quantization="4bit")
