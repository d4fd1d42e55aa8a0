"""The agent run's markdown report: one row per condition, success by task kind, and why tasks failed."""

from __future__ import annotations

import math

from .tasks import KINDS


def _r(m: dict | None) -> str:
    if m is None:
        return "–"
    v, lo, hi = m["rate"]
    if math.isnan(v):
        return "undefined"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}] ({m['k']}/{m['n']})"


def report(results: dict, meta: dict) -> str:
    """``results``: condition -> ``condition_metrics``; ``meta``: condition -> what was run (model, asset, ...)."""
    lines = [
        "# Agent benchmark",
        "",
        "A real loop with the `openai` client against `steerlab serve`; tools run by safe local stand-ins; at most "
        "`max_rounds` replies per task; 95% bootstrap intervals (k/n in brackets).",
        "",
        "| condition | what | tool-task success | no call on no-tool tasks | invalid calls reaching the agent "
        "| dropped by the server | extra call where the answer was due | unfinished loops | tool tasks with a call "
        "| mean rounds | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        inv = f"{m['invalid_calls']} of {m['calls_returned']} calls"
        lines.append(
            f"| {name} | {meta.get(name, {}).get('what', '')} | {_r(m['tool_success'])} | {_r(m['no_call'])} | {inv} "
            f"| {m['dropped_calls']} | {_r(m['extra_call'])} | {_r(m['unfinished'])} | {_r(m['tool_called'])} "
            f"| {m['mean_rounds']:.2f} | {meta.get(name, {}).get('wall_seconds', float('nan')):.0f} |"
        )
    kinds = [k for k in KINDS if any(k in m["success_by_kind"] for m in results.values())]
    lines += [
        "",
        "Success by task kind:",
        "",
        "| condition | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for name, m in results.items():
        lines.append(f"| {name} | " + " | ".join(_r(m["success_by_kind"].get(k)) for k in kinds) + " |")
    lines += ["", "Why tasks failed (counts):", ""]
    for name, m in results.items():
        why = "; ".join(f"{k}: {v}" for k, v in m["failures"].items()) or "none failed"
        lines.append(f"- `{name}`: {why}")
        if m["invalid_examples"]:
            lines.append(f"  - invalid calls, e.g. {' | '.join(m['invalid_examples'])}")
    lines += ["", "Runs:", ""]
    for name, info in meta.items():
        lines.append(f"- `{name}`: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "what"))
    return "\n".join(lines) + "\n"
