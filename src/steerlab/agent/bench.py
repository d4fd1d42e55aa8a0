"""``steerlab agent eval`` as a function: each condition served in-process on a loopback port (or an external
server), every task through the loop, transcripts and figures written under the run folder.

Layout: ``OUT/<condition>/{transcripts.jsonl, metrics.json, meta.json}`` (each folder written whole or not at
all), then ``OUT/metrics.json`` and ``OUT/report.md`` over every condition folder present, so a condition run later
(e.g. ``asset`` once an asset exists) joins the same report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..base.files import atomic_write
from ..config import UserError
from ..runs import atomic_dir, load_json, save_json
from .loop import Transcript, run_tasks
from .metrics import condition_metrics
from .report import report
from .stand_ins import StandIns
from .tasks import AgentTask

CONDITIONS = {
    "plain": "the model alone: tools listed, no few-shot turns, no asset",
    "few_shot": "the model with steerlab's default few-shot turns, no asset",
    "asset": "the model with the ASA asset (its prompt, gate and operating point)",
}
ORDER = tuple(CONDITIONS)


def condition_engine(lm: object, name: str, asset: str | Path | None = None) -> object:
    """The serving engine of a condition over an already loaded model."""
    from ..serve.engine import Engine

    if name == "plain":
        return Engine(lm, few_shot=False)
    if name == "few_shot":
        return Engine(lm, few_shot=True)
    if name == "asset":
        if asset is None:
            raise UserError("condition 'asset' needs --asset DIR (an ASA asset from `steerlab asa run`)")
        return Engine(lm, asset)
    raise UserError(f"unknown condition {name!r}; valid: {', '.join(CONDITIONS)}")


def run_condition(
    source: Callable[[], object] | str,
    tasks: Sequence[AgentTask],
    tools: Sequence[dict],
    model: str | None = None,
    stand_ins: StandIns | None = None,
    max_rounds: int = 3,
    max_tokens: int = 160,
    concurrency: int = 4,
    request_options: dict | None = None,
    timeout: float = 3600.0,
) -> tuple[list[Transcript], dict]:
    """Transcripts of every task and what was run: ``source`` is a base URL or a function building an engine,
    served here on a loopback port for the duration."""
    stand_ins = stand_ins or StandIns.shipped()
    t0 = time.perf_counter()
    kw = dict(
        max_rounds=max_rounds,
        max_tokens=max_tokens,
        concurrency=concurrency,
        request_options=request_options,
        timeout=timeout,
    )
    if isinstance(source, str):
        trs = run_tasks(source, model, tasks, tools, stand_ins, **kw)
        info = {"server": source, "model": model or "(the server's first listed model)"}
    else:
        from ..serve.app import ServeConfig, create_app
        from ..serve.background import serve_in_thread

        engine = source()
        app = create_app(lambda: engine, ServeConfig(max_batch=max(1, concurrency)))
        with serve_in_thread(app) as base:
            trs = run_tasks(base, engine.model_id, tasks, tools, stand_ins, **kw)
        info = {"model": engine.model_id, "asset": engine.asset_name}
    info.update(
        tasks=len(tasks),
        max_rounds=max_rounds,
        max_tokens=max_tokens,
        wall_seconds=round(time.perf_counter() - t0, 1),
    )
    return trs, info


def save_condition(
    out: str | Path,
    name: str,
    tasks: Sequence[AgentTask],
    trs: Sequence[Transcript],
    info: dict,
    n_boot: int = 2000,
) -> dict:
    metrics = condition_metrics(tasks, trs, n_boot=n_boot)
    with atomic_dir(Path(out) / name) as tmp:
        with open(tmp / "transcripts.jsonl", "w", encoding="utf-8") as f:
            for tr in trs:
                f.write(json.dumps(tr.to_dict(), ensure_ascii=False) + "\n")
        save_json(tmp / "metrics.json", metrics)
        save_json(tmp / "meta.json", {"what": CONDITIONS.get(name, "an external server"), **info})
    return metrics


def write_report(out: str | Path) -> Path:
    """``metrics.json`` and ``report.md`` over every condition folder under ``out``."""
    out = Path(out)
    names = sorted(
        (p.name for p in out.iterdir() if (p / "metrics.json").is_file() and not p.name.startswith(".")),
        key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n),
    )
    results = {n: load_json(out / n / "metrics.json") for n in names}
    meta = {n: load_json(out / n / "meta.json") for n in names}
    save_json(out / "metrics.json", {"conditions": results, "meta": meta})
    return atomic_write(out / "report.md", report(results, meta))
