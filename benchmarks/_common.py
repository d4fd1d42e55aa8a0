"""Shared bits of the benchmark scripts: prompts, timing, JSON output, and the small mode every script has.

``--smoke`` runs a script end to end on a tiny random model with a handful of inputs and one round, so the test
suite can check that every benchmark still runs and writes a well-formed result (tests/test_benchmarks_smoke.py);
its figures measure nothing. Its results go to ``benchmarks/results/smoke/`` (ignored by git) or ``--out``, never
over the committed results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

TOPICS = [
    "the weather in Lyon",
    "prime numbers",
    "Python decorators",
    "the French revolution",
    "photosynthesis",
    "a haiku about rain",
    "how to boil an egg",
    "the capital of Peru",
    "compound interest",
    "black holes",
    "the rules of chess",
    "a polite email declining a meeting",
    "the speed of light",
    "sourdough bread",
    "the Pythagorean theorem",
    "translating 'good night' into German",
]
FORMS = [
    "Tell me about {}.",
    "Can you explain {} briefly?",
    "What should I know about {}?",
    "Give me three facts on {}.",
    "Write two sentences on {}, please.",
    "Why do people care about {}?",
    "Summarise {} for a child.",
    "What is surprising about {}?",
    "Explain {} like I am new to it.",
    "How would you describe {} to a friend?",
    "Is there a common mistake people make about {}?",
    "What is the history of {}?",
    "List the key ideas of {}.",
    "Quiz me on {}.",
    "Help me understand {}.",
    "Say something interesting about {}.",
]


RESULTS = Path(__file__).parent / "results"
SMOKE_RESULTS = RESULTS / "smoke"
TINY = "tiny"  # load_bench_model: a random Llama with SmolLM2's 30 layers, hidden 32, char tokenizer


def parse_args(
    ap: argparse.ArgumentParser, argv: list[str] | None = None, **smoke: object
) -> argparse.Namespace:
    """Add ``--smoke`` and ``--out`` to ``ap`` and parse. With ``--smoke`` the keyword values become the defaults
    (options given explicitly still win), ``args.out`` defaults to ``benchmarks/results/smoke/``."""
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a small run that only checks the script works end to end (figures mean nothing): "
        + ", ".join(f"{k}={v}" for k, v in smoke.items()),
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the result JSON (default benchmarks/results/, with --smoke benchmarks/results/smoke/)",
    )
    if ap.parse_known_args(argv)[0].smoke:
        ap.set_defaults(**smoke)
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = SMOKE_RESULTS if args.smoke else RESULTS
    return args


def prompts(n: int) -> list[str]:
    out = [f.format(t) for t in TOPICS for f in FORMS]
    return (out * (n // len(out) + 1))[:n]


def timeit(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_result(name: str, result: dict, args: argparse.Namespace) -> Path:
    """Write ``result`` (plus the machine, and whether it was a smoke run) to ``args.out``; returns the path."""
    result = {
        **result,
        "smoke": bool(args.smoke),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or "?",
        },
    }
    from steerlab.runs import save_json  # atomic: a killed run never leaves half a result

    device = str(result.get("device", "cpu")).split(":")[0]
    path = save_json(Path(args.out) / f"{name}_{device}.json", result)
    print(json.dumps(result, indent=2))
    return path


def load_bench_model(spec: str):  # noqa: ANN201
    """The embedded model, or ``random-smollm2-shape`` (same shape, random weights, char tokenizer) for machines
    without the GGUF (e.g. a GPU box), or ``tiny`` (SmolLM2's 30 layers at hidden size 32, random: ``--smoke``)."""
    from steerlab.models import load_model, tiny_model, wrap_model

    if spec == TINY:
        return tiny_model("llama", n_layers=30)
    if spec != "random-smollm2-shape":
        return load_model(spec, device="auto")
    from transformers import AutoModelForCausalLM, LlamaConfig

    from steerlab.models.tiny import char_tokenizer

    tok = char_tokenizer()
    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=5,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_config(cfg).to(dev)
    return wrap_model(model, tok, name=spec)


def tiny_asa_run(out: Path, until: str = "actions"):  # noqa: ANN201
    """``--smoke`` input for the scripts that rerun stages of a finished ASA run: a run of the default preset on
    the ``tiny`` model (few prompts per cell) up to ``until``, built once in ``out/tiny-asa-run`` and reused by the
    next script. Returns the run directory and a model holder that answers ``tiny`` with that model."""
    from steerlab.asa.stages import runner
    from steerlab.stages import ModelHolder

    models = ModelHolder()
    models.put(TINY, load_bench_model(TINY))
    root = Path(out) / "tiny-asa-run"
    runner(tiny_asa_config(root), root, progress=False, models=models).run_all(until=until)
    return root, models


def tiny_asa_config(root: Path, preset: str = "default"):  # noqa: ANN201
    """The config of ``tiny_asa_run`` (the scripts rebuild it to rerun a stage on a copy)."""
    from steerlab.asa.config import AsaConfig

    return AsaConfig(
        preset=preset,
        model=TINY,
        out=str(root),
        limit_per_cell=2,
        n_top_layers=1,
        extra_layers=[],
        string_pattern="^[^<}]{1,4}$",
        max_new_tokens_call=60,  # a character tokenizer: one token per character of the call
        action_rows=4,
        batch_size=8,
        n_boot=20,
    )


BEFORE_EVALUATE = ("extract", "sweep", "vectors", "fit", "screen", "tune", "gate", "actions")


@contextlib.contextmanager
def asa_run_copy(ap: argparse.ArgumentParser, args: argparse.Namespace, prefix: str) -> Iterator[tuple]:
    """A runner on a temporary copy of a finished ASA run's stages before evaluate (``--run``; with ``--smoke`` and
    no ``--run``, the tiny run), so a script reruns stages without touching the run; removed afterwards. Yields the
    source run directory and the runner."""
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.stages import runner

    models = None
    if args.run is None:
        if not args.smoke:
            ap.error("--run is required: a finished run directory of `steerlab asa run`")
        src, models = tiny_asa_run(args.out)
    else:
        src = Path(args.run)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        for stage in BEFORE_EVALUATE:
            shutil.copytree(src / stage, tmp / stage)
        cfg = tiny_asa_config(tmp) if models else AsaConfig(preset=args.preset, out=str(tmp))
        r = runner(cfg, tmp, progress=False, models=models)
        for stage in BEFORE_EVALUATE:
            if not r.is_done(stage):
                raise SystemExit(f"{src}/{stage} was not run with --preset {args.preset}'s config")
        yield src, r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def first_test_rows(n: int | None) -> Iterator[None]:
    """Within it, the evaluate stage sees only the first ``n`` TEST prompts (the same code path, a shorter run);
    ``None`` or 0: all of them."""
    import steerlab.asa.evaluation as evaluation
    from steerlab.asa.stages import AsaInputs

    real_inputs, real_states = evaluation.inputs, evaluation.states
    if n:

        def fewer(ctx):  # noqa: ANN001, ANN202
            data = AsaInputs(ctx.config)
            data.examples["test"] = data.examples["test"][:n]
            return data

        def fewer_states(ctx, split):  # noqa: ANN001, ANN202
            h = real_states(ctx, split)
            return h[:n] if split == "test" else h

        evaluation.inputs, evaluation.states = fewer, fewer_states
    try:
        yield
    finally:
        evaluation.inputs, evaluation.states = real_inputs, real_states


def padded_batches(lm, ids: list[list[int]], batch_size: int) -> list[tuple[list[int], dict]]:  # noqa: ANN001
    """The batches steerlab forms (length-sorted, left-padded, positions that skip the padding), built once, so a
    bare forward over them is the physical limit of any method that reads these tokens."""
    from steerlab.models import left_pad, position_ids_from_mask
    from steerlab.models.text import length_sorted_batches

    out = []
    for batch in length_sorted_batches([len(x) for x in ids], batch_size):
        input_ids, mask = left_pad([ids[i] for i in batch], lm.tokenizer.pad_token_id, lm.device)
        out.append(
            (
                batch,
                {
                    "input_ids": input_ids,
                    "attention_mask": mask,
                    "position_ids": position_ids_from_mask(mask),
                },
            )
        )
    return out


def sync(lm) -> None:  # noqa: ANN001
    if lm.device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each function, run in turn for ``rounds`` rounds (so they share the machine's noise)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def profile_top(fn: Callable[[], object], path: Path, rows: int = 25) -> str:
    """torch.profiler's table of ``fn`` (CPU time by operator), written to ``path``; where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        fn()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    path.parent.mkdir(exist_ok=True)
    path.write_text(table)
    return table
