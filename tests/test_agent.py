"""The agent benchmark: stand-in tools (exact values, refusals, no code execution), the task checker, the held-out
task file, and the loop end to end against ``steerlab serve`` on a tiny model through the real ``openai`` client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from steerlab.agent.cli import spread
from steerlab.agent.loop import Transcript, call_problems
from steerlab.agent.metrics import condition_metrics, failure
from steerlab.agent.stand_ins import (
    NO_EXECUTION,
    NO_RESULTS,
    NO_TRANSLATION,
    StandIns,
    calculator,
    python_interpreter,
)
from steerlab.agent.tasks import AgentTask, answer_found, load_tasks, numbers_in, task_success
from steerlab.config import UserError
from steerlab.data.asa_data import ASA_SPLITS, load_asa_split, load_asa_tools

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- stand-ins


def test_calculator_exact_values_and_refusals():
    assert calculator({"expression": "1284 * 37"}) == "47508"
    assert calculator({"expression": "247.50 / 3"}) == "82.5"
    assert calculator({"expression": "3 * 58.4"}) == "175.2"  # float noise does not reach the agent
    assert calculator({"expression": "2,345 ** 2"}) == "5499025"
    for bad in ("__import__('os').system('ls')", "x + 1", "1 / 0", "10 ** 10 ** 10", None):
        assert calculator({"expression": bad}).startswith("error: ")
    assert calculator({}).startswith("error: ")


def test_interpreter_runs_only_print_of_arithmetic(tmp_path):
    assert python_interpreter({"code": "print(len('chrysanthemum') * 7)"}) == "91"
    assert python_interpreter({"code": "print(48 ** 2 - 1000)"}) == "1304"
    assert python_interpreter({"code": "print(7 / 2)"}) == "3.5"
    target = tmp_path / "touched"
    for code in (
        f"open({str(target)!r}, 'w').write('x')",
        f"print(len(open({str(target)!r}, 'w').name))",
        "import os; print(1)",
        "print(__import__('os').getcwd())",
        "print(sum(range(10)))",
        "print(len(x))",
        "print(1); print(2)",
        "def f(): pass",
        "print(",
        "",
    ):
        assert python_interpreter({"code": code}) == NO_EXECUTION, code
    assert not target.exists()  # nothing was executed
    assert python_interpreter({}) == NO_EXECUTION


def test_search_index_and_phrasebook():
    si = StandIns.shipped()
    for t in load_tasks():
        if t.kind == "fact":  # the task's own words find the entry that holds its answer
            assert t.answer in si.web_search({"query": t.prompt}), t.id
    assert "Juniper Fox" in si.web_search({"query": "Quillon OS release code name"})
    assert "Amber Wren" in si.web_search(
        {"query": "Quillon OS 8"}
    )  # the distractor is found for its own words
    assert si.web_search({"query": "weather in Paris"}) == NO_RESULTS
    assert si.web_search({"query": "kestrel"}) == NO_RESULTS  # one shared word is not enough
    assert si.web_search({}) == NO_RESULTS
    ok = {"text": "Good luck with your exam!", "target_language": "german"}
    assert si.translator(ok) == "Viel Glück bei deiner Prüfung"
    assert si.translator({**ok, "target_language": "de"}) == "Viel Glück bei deiner Prüfung"
    assert si.translator({**ok, "target_language": "French"}) == "Bonne chance pour ton examen"
    assert si.translator({**ok, "target_language": "Klingon"}) == NO_TRANSLATION
    assert si.translator({"text": "good luck", "target_language": "German"}) == NO_TRANSLATION
    assert si.run("translator", json.dumps(ok)) == "Viel Glück bei deiner Prüfung"
    assert si.run("calculator", '{"expression": "2 + 2"}') == "4"
    assert si.run("shell", {"cmd": "ls"}).startswith("error: unknown tool 'shell'")
    assert si.run("calculator", "{not json").startswith("error: the arguments are not valid JSON")
    assert si.run("calculator", "[1]") == "error: the arguments must be a JSON object"


# ---------------------------------------------------------------------------------------------- tasks


def _task(kind: str, answer: str | None) -> AgentTask:
    return AgentTask("t", kind, "q", answer, ("calculator",) if answer else ())


def test_answer_checker():
    assert numbers_in("It is 47,508 boxes, or 1,234,567.5 and 3, 4") == [47508, 1234567.5, 3, 4]
    n = _task("arith", "47508")
    assert answer_found(n, "They ship 47,508 boxes.") and answer_found(n, "47508.0")
    assert not answer_found(n, "475,080") and not answer_found(n, "4750") and not answer_found(n, "v47508")
    assert answer_found(_task("two_step", "52.5"), "That is $52.50 in total")
    assert answer_found(_task("arith", "441"), "18% of 2,450 is 441.")
    f = _task("fact", "Mirela Dascalu")
    assert answer_found(f, "The prize went to MIRELA DASCALU, an architect.")
    assert not answer_found(f, "Mirela won.")
    tr = _task("translate", "Combien coûte la carte ?")
    assert answer_found(tr, "In French: « Combien coûte la carte? »")
    assert not answer_found(tr, "Combien coute la carte")  # accents are part of the translation
    nt = _task("no_tool", None)
    assert task_success(nt, "Ottawa.", called=False)
    assert not task_success(nt, "Ottawa.", called=True) and not task_success(nt, "  ", called=False)
    assert not task_success(n, None, called=True)  # unfinished


def test_tasks_file_is_held_out_and_what_the_script_writes(tmp_path):
    tasks = load_tasks()
    assert sum(t.needs_tool for t in tasks) >= 40 and sum(not t.needs_tool for t in tasks) >= 20
    small = load_tasks(subset="small")
    assert {t.kind for t in small} == {t.kind for t in tasks} and len(small) < 10
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_agent_tasks.py"), str(tmp_path)], check=True
    )
    for name in ("tasks.jsonl", "search_index.jsonl", "phrasebook.jsonl"):
        assert (tmp_path / name).read_bytes() == (ROOT / "src/steerlab/data/agent" / name).read_bytes(), name
    # no task is a (near-)copy of any ASA prompt or conversation request
    asa = [e.prompt for s in ASA_SPLITS for e in load_asa_split(s)]
    texts = [" ".join(p.lower().split()) for p in [t.prompt for t in tasks] + asa]
    x = (
        CountVectorizer(analyzer="char", ngram_range=(5, 5), binary=True)
        .fit_transform(texts)
        .astype(np.float32)
    )
    k = len(tasks)
    inter = (x[:k] @ x[k:].T).toarray()
    size = np.asarray(x.sum(axis=1)).ravel()
    jac = inter / (size[:k, None] + size[None, k:] - inter)
    i, j = np.unravel_index(np.argmax(jac), jac.shape)
    assert jac[i, j] < 0.6, f"agent task ~ ASA prompt: {tasks[i].prompt!r} ~ {asa[j]!r}"
    with pytest.raises(UserError, match="subset 'tiny'"):
        load_tasks(subset="tiny")


def test_spread_covers_every_kind():
    tasks = load_tasks()
    assert {t.kind for t in spread(tasks, 6)} == {t.kind for t in tasks}
    assert spread(tasks, None) == tasks and len(spread(tasks, 100)) == len(tasks)


def test_call_problems():
    tools = load_asa_tools()
    assert call_problems("calculator", '{"expression": "1+1"}', tools) == []
    assert call_problems("math", '{"expression": "1+1"}', tools) == ["tool 'math' was not offered"]
    assert call_problems("translator", '{"expression": "x"}', tools)[0] == "missing required argument 'text'"
    assert call_problems("calculator", '{"expression": ', tools)[0].startswith("arguments are not valid JSON")


# ---------------------------------------------------------------------------------------------- the loop, served


@pytest.fixture(scope="module")
def tiny_server(tiny_models, tmp_path_factory):
    """The tiny model with the tiny ASA asset (its string pattern bounds a random model's string arguments, so a
    forced call closes), served on a loopback port."""
    pytest.importorskip("fastapi")
    pytest.importorskip("openai")
    from serve_helpers import running_server, tiny_asset
    from steerlab.serve.app import ServeConfig, create_app
    from steerlab.serve.engine import Engine

    lm = tiny_models("llama")
    engine = Engine(lm, tiny_asset(tmp_path_factory.mktemp("agent-asa"), lm))
    with running_server(create_app(lambda: engine, ServeConfig(max_batch=4))) as base:
        yield base


def test_loop_mechanics_against_the_served_tiny_model(tiny_server):
    """Forced calls (``tool_choice='required'``) make every round a valid call: the loop must stop at max_rounds,
    run each call through the stand-ins and append its result under the call's id; the figures come from the
    transcript alone."""
    from steerlab.agent.loop import run_tasks

    tasks = load_tasks(subset="small")
    tools = load_asa_tools()
    si = StandIns.shipped()
    trs = run_tasks(
        tiny_server,
        None,  # the served model, as the server lists it
        tasks,
        tools,
        si,
        max_rounds=2,
        max_tokens=200,
        request_options={"tool_choice": "required"},
    )
    assert [tr.task_id for tr in trs] == [t.id for t in tasks]
    for tr in trs:
        assert tr.error is None and tr.final is None and len(tr.replies) == 2  # bounded, unfinished
        m = tr.messages
        assert m[0] == {"role": "user", "content": next(t.prompt for t in tasks if t.id == tr.task_id)}
        k = 1
        for rnd, reply in enumerate(tr.replies):
            assert reply.round == rnd and reply.tool_calls and reply.invalid_calls == []
            assert reply.after_tool_result == (rnd > 0) and reply.steerlab["dropped_calls"] == 0
            assert m[k]["role"] == "assistant" and [c["id"] for c in m[k]["tool_calls"]] == [
                c["id"] for c in reply.tool_calls
            ]
            for c in reply.tool_calls:
                k += 1
                assert m[k] == {
                    "role": "tool",
                    "tool_call_id": c["id"],
                    "content": si.run(c["name"], c["arguments"]),
                }
            k += 1
        assert k == len(m)
    met = condition_metrics(tasks, trs, n_boot=50)
    assert met["unfinished"]["k"] == len(tasks) and met["tool_success"]["k"] == 0
    assert met["calls_returned"] == sum(len(r.tool_calls) for tr in trs for r in tr.replies)
    assert met["invalid_calls"] == 0 and met["no_call"]["k"] == 0
    # the answer was due after round 1 for tasks of one tool step or none (not for two-step tasks): their second
    # call counts as extra
    one_tool = sum(len(t.tools) <= 1 for t in tasks)
    assert met["extra_call"]["n"] == one_tool and met["extra_call"]["k"] == one_tool
    assert set(met["failures"]) == {"unfinished: every round made a call"}
    back = [Transcript.from_dict(json.loads(json.dumps(tr.to_dict()))) for tr in trs]
    assert condition_metrics(tasks, back, n_boot=50) == met


def test_agent_eval_command_end_to_end(tiny_models, tmp_path, monkeypatch):
    """``steerlab agent eval`` on the tiny model: both conditions served in-process, report and transcripts written,
    and the report's figures are the transcripts' (a no-call reply ends the loop with its content as the answer)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("openai")
    from steerlab import cli
    from steerlab.serve import engine as engine_mod

    lm = tiny_models("llama")
    monkeypatch.setattr(engine_mod, "_load_any", lambda spec, device, dtype: lm)
    out = tmp_path / "agent"
    argv = ["agent", "eval", "--model", "tiny", "--subset", "small", "--max-tokens", "8", "--n-boot", "50"]
    assert cli.main([*argv, "--conditions", "plain,few_shot", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| plain |" in report and "| few_shot |" in report
    tasks = load_tasks(subset="small")
    for name in ("plain", "few_shot"):
        trs = [
            Transcript.from_dict(json.loads(x))
            for x in (out / name / "transcripts.jsonl").read_text().splitlines()
        ]
        assert len(trs) == len(tasks)
        for tr in trs:
            assert 1 <= len(tr.replies) <= 3
            if tr.final is not None:
                assert not tr.replies[-1].tool_calls and tr.messages[-1] == {
                    "role": "assistant",
                    "content": tr.final,
                }
        saved = json.loads((out / "metrics.json").read_text())["conditions"][name]
        assert saved == json.loads(json.dumps(condition_metrics(tasks, trs, n_boot=50)))
        assert all(failure(t, tr) is None or isinstance(failure(t, tr), str) for t, tr in zip(tasks, trs))
    assert cli.main([*argv, "--conditions", "asset", "--out", str(out)]) == 2  # no --asset: one line, exit 2
    assert cli.main([*argv, "--conditions", "lora", "--out", str(out)]) == 2


def test_docs_agent_loop_runs_and_the_docs_show_it(tiny_server):
    example = ROOT / "docs" / "examples" / "agent_loop.py"
    doc = (ROOT / "docs" / "serve.md").read_text()
    block = doc.split("<!-- agent_loop.py -->\n```python\n", 1)[1].split("```\n", 1)[0]
    assert block == example.read_text()
    r = subprocess.run(
        [sys.executable, str(example), tiny_server, "Translate 'good luck with your exam' into German."],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "gate: {" in r.stdout and ("answer:" in r.stdout or "no answer after 3 replies" in r.stdout)
