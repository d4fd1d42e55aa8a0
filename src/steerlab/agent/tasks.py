"""The agent tasks (``steerlab/data/agent/tasks.jsonl``) and the checker of a final answer.

A tool task succeeds when the loop ends with a plain answer that holds the expected answer: the exact number for
arithmetic, code and two-step tasks (thousands separators allowed, ``52.50`` = ``52.5``), the fact or the
translation as a string (case, accents kept, punctuation and spacing ignored). A no-tool task succeeds when no
call was returned in any round and the answer is not empty.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..config import UserError
from .stand_ins import _data, normalize

KINDS = ("arith", "code", "fact", "translate", "two_step", "no_tool")
NUMERIC = ("arith", "code", "two_step")


@dataclass(frozen=True)
class AgentTask:
    id: str
    kind: str
    prompt: str
    answer: str | None
    tools: tuple[str, ...]  # the tools the task needs, in order (none for a no-tool task)
    small: bool = False

    @property
    def needs_tool(self) -> bool:
        return bool(self.tools)


def load_tasks(path: str | Path | None = None, subset: str = "all") -> list[AgentTask]:
    """The shipped tasks (or a JSONL of the same fields); ``subset='small'``: only those marked small."""
    if subset not in ("all", "small"):
        raise UserError(f"task subset {subset!r} is not one of: all, small")
    path = Path(path) if path is not None else _data() / "tasks.jsonl"
    if not path.is_file():
        raise UserError(f"agent tasks {str(path)!r} do not exist")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            task = AgentTask(
                str(row["id"]),
                row["kind"],
                row["prompt"],
                row["answer"],
                tuple(row["tools"]),
                bool(row.get("small", False)),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise UserError(f"{path}:{n}: not a task (id, kind, prompt, answer, tools): {err}") from None
        if task.kind not in KINDS:
            raise UserError(f"{path}:{n}: kind {task.kind!r} is not one of {', '.join(KINDS)}")
        if task.needs_tool != (task.answer is not None):
            raise UserError(f"{path}:{n}: a tool task needs an answer and a no-tool task none")
        if subset == "all" or task.small:
            out.append(task)
    if not out:
        raise UserError(f"{path} holds no {subset} tasks")
    return out


_SEPARATORS = re.compile(r"(?<=\d)[,\u00a0\u202f\u2009](?=\d{3}(?!\d))")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def numbers_in(text: str) -> list[Decimal]:
    """Every number written in ``text`` (1,234 and 1\u202f234, a narrow no-break space, read as 1234)."""
    out = []
    for tok in _NUMBER.findall(_SEPARATORS.sub("", text)):
        try:
            out.append(Decimal(tok))
        except InvalidOperation:
            continue
    return out


def answer_found(task: AgentTask, answer: str) -> bool:
    """Whether ``answer`` holds the task's expected answer (see the module docstring)."""
    if task.answer is None:
        return bool(answer.strip())
    if task.kind in NUMERIC:
        want = Decimal(task.answer)
        return any(x == want for x in numbers_in(answer))
    return f" {normalize(task.answer)} " in f" {normalize(answer)} "


def task_success(task: AgentTask, final: str | None, called: bool) -> bool:
    """A tool task: the loop finished with an answer holding the expected one. A no-tool task: no call was
    returned and the answer is not empty."""
    if final is None:
        return False
    if not task.needs_tool:
        return not called and bool(final.strip())
    return answer_found(task, final)
