"""The agent loop: the official ``openai`` client against an OpenAI-compatible server (``steerlab serve``).

Per task: send the conversation and the tools; if the reply has ``tool_calls``, run each with the stand-ins and
append the assistant message and one ``tool`` message per call (with its ``tool_call_id``); repeat until a reply
has no call (its content is the final answer) or ``max_rounds`` replies were made (the loop is unfinished). Every
reply is recorded with the server's ``steerlab`` field, so the metrics are computed from the transcript alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from ..tools import tool_spec, validate_call
from .stand_ins import StandIns
from .tasks import AgentTask


@dataclass
class Reply:
    """One model reply in a loop."""

    round: int
    content: str | None
    tool_calls: list[dict]  # {"id", "name", "arguments" (the JSON text the server sent)}
    finish_reason: str | None
    steerlab: dict | None  # the server's own report (gate, dropped calls, ...); None from other servers
    after_tool_result: bool  # the conversation ended with a tool result when this reply was asked for
    answer_due: bool  # ... and the task's tool steps were all done, so an answer was due
    invalid_calls: list[dict] = field(
        default_factory=list
    )  # {"name", "problems"} of calls that reached the agent


@dataclass
class Transcript:
    task_id: str
    replies: list[Reply]
    messages: list[dict]  # the whole conversation, the final answer included
    final: str | None  # the answer (None: the loop did not finish)
    error: str | None = None  # a request that failed
    seconds: float = 0.0

    @property
    def called(self) -> bool:
        return any(r.tool_calls for r in self.replies)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Transcript:
        return cls(**{**d, "replies": [Reply(**r) for r in d["replies"]]})


def call_problems(name: str, arguments: str, tools: Sequence[dict]) -> list[str]:
    """Why a returned call is not one the agent can run: a tool that was not offered, arguments that are not a
    JSON object or that break the tool's schema (empty: a valid call)."""
    if name not in {tool_spec(t)["name"] for t in tools}:
        return [f"tool {name!r} was not offered"]
    try:
        args = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError as err:
        return [f"arguments are not valid JSON ({err.msg})"]
    return validate_call({"name": name, "arguments": args}, list(tools))


def run_task(
    client: object,
    model: str,
    task: AgentTask,
    tools: Sequence[dict],
    stand_ins: StandIns,
    max_rounds: int = 3,
    max_tokens: int = 160,
    request_options: dict | None = None,
) -> Transcript:
    """One task through the loop (see the module docstring); a failed request ends it with ``error`` set.
    ``request_options``: more fields of every request (``tool_choice``, ``extra_body``, ...)."""
    t0 = time.perf_counter()
    messages: list[dict] = [{"role": "user", "content": task.prompt}]
    replies: list[Reply] = []
    results = 0  # tool results in the conversation so far
    final, error = None, None
    for rnd in range(max_rounds):
        after = messages[-1]["role"] == "tool"
        try:
            r = client.chat.completions.create(
                model=model,
                messages=messages,
                tools=list(tools),
                temperature=0,
                max_tokens=max_tokens,
                **(request_options or {}),
            )
        except Exception as err:  # noqa: BLE001 - recorded: the loop of this task ends, the others go on
            error = f"{type(err).__name__}: {err}"
            break
        choice = r.choices[0]
        msg = choice.message
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments or ""}
            for c in (msg.tool_calls or [])
        ]
        reply = Reply(
            round=rnd,
            content=msg.content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            steerlab=(r.model_extra or {}).get("steerlab"),
            after_tool_result=after,
            answer_due=after and results >= len(task.tools),
            invalid_calls=[
                {"name": c["name"], "problems": p}
                for c in calls
                if (p := call_problems(c["name"], c["arguments"], tools))
            ],
        )
        replies.append(reply)
        if not calls:
            final = msg.content or ""
            messages.append({"role": "assistant", "content": final})
            break
        messages.append(
            {
                "role": "assistant",
                "content": msg.content or "",
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ],
            }
        )
        for c in calls:
            out = stand_ins.run(c["name"], c["arguments"])
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": out})
            results += 1
    return Transcript(task.id, replies, messages, final, error, time.perf_counter() - t0)


def run_tasks(
    base_url: str,
    model: str | None,
    tasks: Sequence[AgentTask],
    tools: Sequence[dict],
    stand_ins: StandIns,
    max_rounds: int = 3,
    max_tokens: int = 160,
    concurrency: int = 4,
    timeout: float = 3600.0,
    request_options: dict | None = None,
) -> list[Transcript]:
    """Every task through the loop against ``base_url``, ``concurrency`` at a time (a server that batches
    concurrent requests, as ``steerlab serve`` does, answers each as if it came alone). ``model`` None: the first
    model the server lists (``GET /models``), as an agent pointed at a one-model server would."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=timeout)
    if model is None:
        model = client.models.list().data[0].id
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(
            pool.map(
                lambda t: run_task(
                    client, model, t, tools, stand_ins, max_rounds, max_tokens, request_options
                ),
                tasks,
            )
        )
