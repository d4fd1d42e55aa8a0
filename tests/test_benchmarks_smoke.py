"""Every script in benchmarks/ still runs: each is run with ``--smoke`` (a tiny random model, a handful of inputs, one
round) and must finish and write a well-formed result, its figures finite numbers. No timing is asserted: smoke
figures measure nothing. The peer comparison runs in the peers' venv (scripts/peers_env.sh; skipped without it).

A script added to benchmarks/ fails ``test_every_script_is_covered`` until it is listed in ``EXPECTED``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RUNNER = Path(__file__).with_name("bench_smoke_runner.py")
PEERS_PYTHON = ROOT / os.environ.get("PEERS_VENV", ".venv-peers") / "bin" / "python"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))
PEER_SCRIPTS = ["bench_vs_peers.py"]  # needs steering-vectors and repeng: the peers' venv only
RENDERS_ONLY = ["limits_report.py", "asa_job_report.py"]  # run nothing: they render results (checked below)
# scripts that compare with a package steerlab does not install: skipped when it is absent
OPTIONAL = {"bench_vs_llamacpp.py": "llama_cpp"}

# script -> (the result file its smoke run writes, the fields that must be finite numbers; "a.b" = field b of a)
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "bench_asa_generate.py": (
        "asa_generate_tiny_cpu.json",
        ["plain_generate_s", "asa_generate_s", "overhead", "rows_changed_by_asa", "gates.0"],
    ),
    "bench_capture.py": (
        "capture_tiny_cpu.json",
        [
            "naive_s",
            "speedup_batched",
            "speedup_shared_prefix",
            "steerlab_batched_s",
            "steerlab_shared_prefix_s",
            "bare_forward_to_deepest_layer_s",
            "steerlab_batched_vs_bare",
            "steerlab_shared_prefix_vs_bare",
            "padded_tokens_per_pass",
        ],
    ),
    "bench_hf_generate_overhead.py": (
        "hf_generate_overhead_cpu.json",
        [
            "median_s.plain",
            "median_s.steerlab",
            "overhead_vs_plain.steerlab",
            "per_step_ms_over_plain.steerlab",
            "hook_cpu_time.steerlab pre-hook on the decoder stack/decode.mean_us",
            "hook_cpu_time.steerlab hook on block 15/decode.mean_us",
            "hook_cpu_time.steerlab hook on block 15/prefill.mean_us",
            "extra_host_reads_per_generate_vs_plain.steerlab",
        ],
    ),
    "bench_mcq_scoring.py": (
        "mcq_scoring_tiny_cpu.json",
        [
            "agreement_with_one_at_a_time",
            "steerlab_batched_s",
            "bare_batched_forward_s",
            "steerlab_vs_bare",
            "one_at_a_time_s",
            "speedup",
            "sweep_9_configs_s",
            "sweep_speedup_vs_naive",
        ],
    ),
    "bench_serve.py": (
        "serve_tiny_cpu.json",
        [
            "plain_one_at_a_time.requests_per_s",
            "plain_concurrent.latency_p50_s",
            "asa_prefill_only.wall_s",
            "throughput_ratio_plain",
            "throughput_ratio_plain_mixed",
            "throughput_ratio_asa",
            "asa_overhead_prefill_only",
            "asa_overhead_per_request",
            "asa_overhead_per_token",
            "plain_with_tool_prompt.latency_p50_s",
            "tool_prompt_tokens",
            "tool_prompt_latency_ratio",
        ],
    ),
    "bench_steering_overhead.py": ("steering_overhead_cpu.json", ["plain_s", "steered_s", "overhead"]),
    "bench_batching.py": (
        "batching_cpu.json",
        ["attention.split_over_fused", "attention.max_abs_diff", "decode_step_ratio_largest_over_smallest"],
    ),
    "bench_prefix_kv.py": (
        "prefix_kv_cpu.json",
        [
            "cpu_seconds.copied.prefill",
            "cpu_seconds.kept_once.step",
            "speedup_prefill",
            "speedup_decode_step",
            "max_abs_logit_difference",
        ],
    ),
    "bench_threads.py": (
        "threads_under_load_cpu.json",
        ["seconds_default", "seconds_steerlab", "ratio_default_over_steerlab", "default_threads"],
    ),
    "bench_evaluate_floor.py": (
        "evaluate_floor_cpu.json",
        [
            "tokens.floor_total",
            "floor_cpu_seconds",
            "stage_cpu_seconds",
            "ratio_stage_over_floor",
            "ratio_generation_over_floor",
            "one_token_schedule_bound_cpu_seconds",
            "ratio_bound_over_floor",
            "schema_mask.ms_per_constrained_token",
        ],
    ),
    "ab_evaluate_stage.py": (
        "ab_evaluate_pool_count_cpu.json",
        [
            "median_cpu_seconds.every row at the longest room",
            "median_cpu_seconds.the peak over the coming steps",
        ],
    ),
    "profile_asa_stages.py": (
        "asa_stage_profile_cpu.json",
        ["profiles.evaluate.cpu_seconds", "profiles.evaluate.operators_self_seconds"],
    ),
    "bench_vs_llamacpp.py": (
        "vs_llamacpp_cpu.json",
        ["ratio_steerlab_batched_over_llamacpp", "ratio_steerlab_one_over_llamacpp"],
    ),
    "bench_sweep_ray.py": (
        "sweep_ray_tiny_cpu.json",
        [
            "serial_s",
            "ray_init_s",
            "ray_2_workers_s",
            "speedup",
            "speedup_including_ray_init",
            "files_compared",
        ],
    ),
    "bench_transcoder_training.py": (
        "transcoder_training_tiny_cpu.json",
        [
            "bare_forward_tokens_per_s",
            "capture_tokens_per_s",
            "training_from_memory_tokens_per_s",
            "streamed_training_tokens_per_s",
            "ratio_streamed_training_to_bare_forward",
            "stream_buffer_mb",
        ],
    ),
    "bench_vs_peers.py": (
        "vs_peers_cpu.json",
        [
            f"{what}.{arm}"
            for what in ("train_s", "train_ratio_peer_over_steerlab")
            for arm in ("steerlab", "steering_vectors", "repeng")
        ]
        + [
            f"{what}.{arm}"
            for what in ("generate_s", "generate_ratio_peer_over_steerlab")
            for arm in ("steerlab", "steerlab_handle_in_hf_generate", "steering_vectors", "repeng")
        ],
    ),
    "load_serve.py": (
        "serve_load_cpu.json",
        [
            "sent",
            "ok",
            "lost",
            "requests_per_s",
            "latency_p50_s",
            "memory_growth_mb_first_to_last",
            "memory_growth_mb_after_20",
            "memory_kb_per_request_after_20",
            "malformed_requests.answered_400_or_other_error",
        ],
    ),
}


def _run(python: Path | str, out: Path, scripts: list[str]) -> tuple[Path, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [str(python), str(RUNNER), str(out), *scripts],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    status_file = out / "status.json"
    assert status_file.exists(), (
        f"the smoke runner died (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return out, json.loads(status_file.read_text())


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """All scripts but the peers' in this interpreter (one run of the runner)."""
    scripts = [s for s in SCRIPTS if s not in PEER_SCRIPTS + RENDERS_ONLY]
    return _run(sys.executable, tmp_path_factory.mktemp("bench-smoke"), scripts)


@pytest.fixture(scope="module")
def peer_runs(tmp_path_factory):
    """The peer comparison and the HF-generate hook timing (with its peer arms) in the peers' venv."""
    if not PEERS_PYTHON.exists():
        pytest.skip(f"no peers venv at {PEERS_PYTHON.parent.parent} (build it: bash scripts/peers_env.sh)")
    return _run(
        PEERS_PYTHON,
        tmp_path_factory.mktemp("bench-smoke-peers"),
        PEER_SCRIPTS + ["bench_hf_generate_overhead.py"],
    )


def _field(result: dict, dotted: str) -> object:
    """``"a.b"``: field b of field a."""
    node: object = result
    for key in dotted.split("."):
        assert isinstance(node, dict) and key in node, f"no field {dotted!r} (at {key!r})"
        node = node[key]
    return node


def check_result(runs: tuple[Path, dict], script: str) -> dict:
    out, status = runs
    assert script in status, f"{script} did not run; the runner got through {sorted(status)}"
    log = out / f"{script}.log"
    tail = log.read_text()[-3000:] if log.exists() else ""
    if script in OPTIONAL and importlib.util.find_spec(OPTIONAL[script]) is None:
        assert status[script]["error"] is None, f"{script} did not skip cleanly:\n{tail}"
        pytest.skip(f"{script}: {OPTIONAL[script]} is not installed")
    if "The current node timed out during startup" in (status[script]["error"] or ""):
        pytest.skip(
            f"{script}: Ray's own start-up (a fixed 30 s for its raylet) timed out twice: machine overloaded"
        )
    assert status[script]["error"] is None, (
        f"{script} --smoke failed:\n{status[script]['error']}\n--- log ---\n{tail}"
    )
    name, fields = EXPECTED[script]
    path = out / name
    assert path.exists(), (
        f"{script} --smoke wrote no {name} in {out}: {sorted(p.name for p in out.iterdir())}"
    )
    result = json.loads(path.read_text())
    assert result["smoke"] is True
    assert isinstance(result["what"], str) and result["what"]
    assert {"python", "torch", "threads"} <= set(result["machine"])
    for f in fields:
        v = _field(result, f)
        assert isinstance(v, (int, float)) and not isinstance(v, bool), (
            f"{script}: {f} = {v!r} is not a number"
        )
        assert math.isfinite(v), f"{script}: {f} = {v!r}"
    return result


def test_every_script_is_covered():
    assert set(EXPECTED) | set(RENDERS_ONLY) == set(SCRIPTS), (
        "list every script of benchmarks/ in EXPECTED (its smoke result file and fields) or RENDERS_ONLY"
    )


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in PEER_SCRIPTS + RENDERS_ONLY])
def test_smoke_run(smoke_runs, script):
    result = check_result(smoke_runs, script)
    if script == "bench_sweep_ray.py":
        assert isinstance(result["files_that_differ"], list) and isinstance(result["same_aggregate"], bool)
    if script == "load_serve.py":
        assert result["sent"] == result["requested"] == 40


@pytest.mark.parametrize("script", PEER_SCRIPTS)
def test_smoke_run_with_peers(peer_runs, script):
    result = check_result(peer_runs, script)
    assert set(result["versions"]) >= {"steering-vectors", "repeng", "transformers"}
    assert int(result["versions"]["transformers"].split(".")[0]) >= 5


def test_hook_timing_with_peers(peer_runs):
    """In the peers' venv the HF-generate overhead script also times the peers' hooks."""
    result = check_result(peer_runs, "bench_hf_generate_overhead.py")
    assert set(result["median_s"]) == {"plain", "steerlab", "steering_vectors", "repeng"}
    for name in ("steering-vectors hook on block 15/decode", "repeng ControlModule (minus block)/decode"):
        assert result["hook_cpu_time"][name]["calls"] >= 1


def _limits_block(text: str) -> str:
    begin = text.index("<!-- BEGIN generated by benchmarks/limits_report.py")
    return text[begin : text.index("<!-- END generated by benchmarks/limits_report.py")]


def _limits_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "limits_report.py"), *args], cwd=ROOT, capture_output=True, text=True
    )


def test_limits_page_is_what_the_committed_results_render(tmp_path):
    """docs/limits.md's generated block is exactly what limits_report.py makes of benchmarks/results/ now."""
    page = tmp_path / "limits.md"
    page.write_text((ROOT / "docs" / "limits.md").read_text())
    proc = _limits_report("--doc", str(page))
    assert proc.returncode == 0, proc.stderr
    assert _limits_block(page.read_text()) == _limits_block((ROOT / "docs" / "limits.md").read_text()), (
        "docs/limits.md is stale: run .venv/bin/python benchmarks/limits_report.py"
    )
    assert proc.stdout.startswith("README: capture ")


def test_limits_report_renders_smoke_results(smoke_runs, tmp_path):
    out, status = smoke_runs
    for script in ("bench_capture.py", "bench_mcq_scoring.py", "bench_asa_generate.py"):
        check_result(smoke_runs, script)
    page = tmp_path / "limits.md"
    proc = _limits_report("--model", "tiny", "--results", str(out), "--doc", str(page))
    assert proc.returncode == 0, proc.stderr
    block = _limits_block(page.read_text())
    assert "Model `tiny`, device `cpu`" in block and "capture_tiny_cpu.json" in block


def _private_uses(path: Path) -> list[str]:
    """steerlab's private names a script reaches for: imports of ``_x`` from steerlab (or of a ``_module``), any
    ``obj._x`` attribute, ``import_module`` of steerlab."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "steerlab":
            parts = node.module.split(".") + [a.name for a in node.names]
            found += [
                f"line {node.lineno}: from {node.module} import {p}" for p in parts if p.startswith("_")
            ]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
        ):
            found.append(f"line {node.lineno}: import_module")
    return found


@pytest.mark.parametrize("script", SCRIPTS + ["_common.py"])
def test_benchmarks_use_public_names_only(script):
    assert _private_uses(BENCH / script) == []


def test_smoke_options(tmp_path):
    """--smoke changes the defaults (explicit options still win) and the output folder; without it nothing changes."""
    import argparse

    sys.path.insert(0, str(BENCH))
    try:
        from _common import RESULTS, SMOKE_RESULTS, parse_args
    finally:
        sys.path.remove(str(BENCH))

    def parser() -> argparse.ArgumentParser:
        ap = argparse.ArgumentParser()
        ap.add_argument("--model", default="smollm2-135m")
        ap.add_argument("--n", type=int, default=256)
        return ap

    full = parse_args(parser(), [], model="tiny", n=8)
    assert (full.model, full.n, full.smoke, full.out) == ("smollm2-135m", 256, False, RESULTS)
    smoke = parse_args(parser(), ["--smoke"], model="tiny", n=8)
    assert (smoke.model, smoke.n, smoke.smoke, smoke.out) == ("tiny", 8, True, SMOKE_RESULTS)
    mixed = parse_args(parser(), ["--smoke", "--n", "3", "--out", str(tmp_path)], model="tiny", n=8)
    assert (mixed.model, mixed.n, mixed.out) == ("tiny", 3, tmp_path)


def test_main_job_block_is_what_the_committed_results_render(tmp_path):
    """docs/limits.md's main-job block is exactly what asa_job_report.py makes of benchmarks/results/ now."""
    begin, end = (
        "<!-- BEGIN generated by benchmarks/asa_job_report.py",
        "<!-- END generated by benchmarks/asa_job_report.py",
    )
    page = tmp_path / "limits.md"
    committed = (ROOT / "docs" / "limits.md").read_text()
    page.write_text(committed)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "asa_job_report.py"), "--doc", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr

    def block(text: str) -> str:
        return text[text.index(begin) : text.index(end)]

    assert block(page.read_text()) == block(committed), (
        "docs/limits.md is stale: run .venv/bin/python benchmarks/asa_job_report.py"
    )
