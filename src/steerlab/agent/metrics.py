"""Per-condition figures of an agent run, computed from the recorded transcripts alone, with bootstrap intervals
(``steerlab.eval.stats``).

- ``tool_success``: tool tasks whose loop ended with an answer holding the expected one;
- ``no_call``: no-tool tasks where no call was returned in any round (``no_tool_success`` also needs an answer);
- ``invalid_calls``: returned ``tool_calls`` the agent cannot run (a tool not offered, arguments that are not JSON
  or break the schema), per call returned; ``dropped_calls``: calls the server itself held back
  (``steerlab.dropped_calls``);
- ``extra_call``: replies that opened a call right after a tool result when the answer was due (the task's tool
  steps were done), per such reply;
- ``unfinished``: loops that used every round without an answer (or whose request failed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ..eval.stats import bootstrap_mean
from .loop import Transcript
from .tasks import KINDS, AgentTask, answer_found, task_success


def rate(values: Sequence[bool], n_boot: int = 2000, seed: int = 0) -> dict | None:
    """{"rate": (mean, lo, hi), "k": hits, "n": count}; None when there is nothing to count."""
    if not values:
        return None
    return {
        "rate": bootstrap_mean([float(v) for v in values], n_boot=n_boot, seed=seed),
        "k": int(sum(values)),
        "n": len(values),
    }


def failure(task: AgentTask, tr: Transcript) -> str | None:
    """Why a task failed, from its transcript (None: it succeeded); locates the limiting step."""
    if task_success(task, tr.final, tr.called):
        return None
    if tr.error is not None:
        return "request failed"
    if tr.final is None:
        return "unfinished: every round made a call"
    if not task.needs_tool:
        return "called a tool" if tr.called else "empty answer"
    if not tr.called:
        return "answered without a call"
    results = [m["content"] for m in tr.messages if m["role"] == "tool"]
    if any(answer_found(task, r) for r in results):
        return "a tool result held the answer, the final answer did not"
    return "no tool result held the answer (wrong tool, arguments or a missing step)"


def condition_metrics(
    tasks: Sequence[AgentTask], transcripts: Sequence[Transcript], n_boot: int = 2000, seed: int = 0
) -> dict:
    by_id = {t.id: t for t in tasks}
    pairs = [(by_id[tr.task_id], tr) for tr in transcripts]
    tool = [(t, tr) for t, tr in pairs if t.needs_tool]
    none = [(t, tr) for t, tr in pairs if not t.needs_tool]
    calls = [c for _, tr in pairs for r in tr.replies for c in r.tool_calls]
    invalid = [c for _, tr in pairs for r in tr.replies for c in r.invalid_calls]
    due = [bool(r.tool_calls) for _, tr in pairs for r in tr.replies if r.answer_due]
    out = {
        "n_tasks": len(pairs),
        "tool_success": rate([task_success(t, tr.final, tr.called) for t, tr in tool], n_boot, seed),
        "tool_called": rate([tr.called for _, tr in tool], n_boot, seed),
        "no_call": rate([not tr.called for _, tr in none], n_boot, seed),
        "no_tool_success": rate([task_success(t, tr.final, tr.called) for t, tr in none], n_boot, seed),
        "calls_returned": len(calls),
        "invalid_calls": len(invalid),
        "invalid_call_rate": rate(
            [bool(r.invalid_calls) for _, tr in pairs for r in tr.replies if r.tool_calls], n_boot, seed
        ),
        "invalid_examples": [f"{c['name']}: {'; '.join(c['problems'])}" for c in invalid[:5]],
        "dropped_calls": sum(
            int((r.steerlab or {}).get("dropped_calls", 0)) for _, tr in pairs for r in tr.replies
        ),
        "extra_call": rate(due, n_boot, seed),
        "unfinished": rate([tr.final is None for _, tr in pairs], n_boot, seed),
        "errors": sum(tr.error is not None for _, tr in pairs),
        "mean_rounds": sum(len(tr.replies) for _, tr in pairs) / max(1, len(pairs)),
        "seconds": sum(tr.seconds for _, tr in pairs),
        "success_by_kind": {
            k: rate([task_success(t, tr.final, tr.called) for t, tr in pairs if t.kind == k], n_boot, seed)
            for k in KINDS
            if any(t.kind == k for t, _ in pairs)
        },
        "failures": dict(Counter(f for t, tr in pairs if (f := failure(t, tr)) is not None).most_common()),
    }
    return out
