import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from steerlab.agent.stand_ins import calculator, python_interpreter
from steerlab.data.asa_data import (
    ASA_DOMAINS,
    ASA_SPLITS,
    load_alpaca_examples,
    load_asa_split,
    load_asa_tools,
    load_jsonl_examples,
)
from steerlab.tools import validate_call

SIZES = {"cal": 320, "train": 320, "valid": 320, "test": 640}
CONVERSATIONS = {"cal": 80, "train": 80, "valid": 80, "test": 160}
TOOL_DOMAIN = {
    "calculator": "math",
    "python_interpreter": "code",
    "web_search": "search",
    "translator": "translation",
}
ROOT = Path(__file__).resolve().parents[1]


def test_sizes_and_balance():
    for split in ASA_SPLITS:
        single = load_asa_split(split, conversations=False)
        both = load_asa_split(split)
        assert len(single) == SIZES[split] and len(both) == SIZES[split] + CONVERSATIONS[split]
        assert both[: len(single)] == single  # single prompts first, unchanged
        assert {e.kind for e in single} == {"single"}
        convs = both[len(single) :]
        assert {e.kind for e in convs} == {"conversation"} and {e.split for e in convs} == {split}
        for ex, n in ((single, SIZES[split]), (convs, CONVERSATIONS[split])):
            cells = Counter((e.domain, e.label) for e in ex)
            assert set(cells) == {(d, lab) for d in ASA_DOMAINS for lab in (0, 1)}
            assert set(cells.values()) == {n // 8}
        assert len({e.id for e in both}) == len(both)


def _text(e) -> str:
    """What is compared across splits: the prompt, or the whole conversation (requests, calls and results)."""
    if not e.messages:
        return e.prompt
    return " ".join(
        m.get("content") or json.dumps(m.get("tool_calls"), ensure_ascii=False) for m in e.messages
    )


@pytest.mark.parametrize("what", ["prompt", "whole"])
def test_no_duplicates_or_near_duplicates_across_splits(what):
    ex = [(s, e.prompt if what == "prompt" else _text(e)) for s in ASA_SPLITS for e in load_asa_split(s)]
    texts = [" ".join(p.lower().split()) for _, p in ex]
    assert len(set(texts)) == len(texts)
    x = (
        CountVectorizer(analyzer="char", ngram_range=(5, 5), binary=True)
        .fit_transform(texts)
        .astype(np.float32)
    )
    inter = (x @ x.T).toarray()
    size = np.asarray(x.sum(axis=1)).ravel()
    jac = inter / (size[:, None] + size[None, :] - inter)
    splits = np.array([s for s, _ in ex])
    cross = splits[:, None] != splits[None, :]
    worst = np.unravel_index(np.argmax(np.where(cross, jac, 0)), jac.shape)
    assert jac[worst] < 0.8, f"near-duplicate across splits: {ex[worst[0]]} ~ {ex[worst[1]]}"


def test_conversations_are_agent_turns_with_valid_calls_and_computed_results():
    tools = load_asa_tools()
    for split in ASA_SPLITS:
        for e in load_asa_split(split)[SIZES[split] :]:
            m = e.messages
            assert m[0] == {"role": "user", "content": e.prompt} and m[-1]["role"] == "tool"
            assert [x["role"] for x in m[1:]] == ["assistant", "tool"] * ((len(m) - 1) // 2), e.id
            called = []
            for call_msg, result in zip(m[1::2], m[2::2]):
                (tc,) = call_msg["tool_calls"]
                fn = tc["function"]
                assert validate_call({"name": fn["name"], "arguments": fn["arguments"]}, tools) == [], e.id
                assert result["tool_call_id"] == tc["id"] and result["content"].strip(), e.id
                called.append(fn["name"])
                # results are computed, not typed: the calculator's and the print-only snippets' outputs
                if fn["name"] == "calculator":
                    assert result["content"] == calculator(fn["arguments"]), e.id
                if fn["name"] == "python_interpreter" and fn["arguments"]["code"].startswith("print(len("):
                    assert result["content"] == python_interpreter(fn["arguments"]), e.id
            if e.label == 0:  # the answer is due: the domain is the tool whose result came back
                assert TOOL_DOMAIN[called[-1]] == e.domain, e.id
            else:  # one step done, the other tool's call is due now
                assert len(called) == 1 and TOOL_DOMAIN[called[0]] != e.domain, e.id


def test_conversations_file_is_what_the_script_writes(tmp_path):
    out = tmp_path / "conversations.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_asa_conversations.py"), str(out)], check=True
    )
    shipped = ROOT / "src" / "steerlab" / "data" / "asa" / "conversations.jsonl"
    assert out.read_bytes() == shipped.read_bytes()


def test_tools_schema_and_domains():
    tools = load_asa_tools()
    names = [t["function"]["name"] for t in tools]
    assert names == ["calculator", "python_interpreter", "web_search", "translator"]
    assert (
        validate_call({"name": "translator", "arguments": {"text": "hi", "target_language": "German"}}, tools)
        == []
    )
    assert validate_call({"name": "calculator", "arguments": {}}, tools) == [
        "missing required argument 'expression'"
    ]


def test_user_jsonl_loader(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "What is 3 x 4?", "domain": "math", "label": 1}) + "\n\n")
    assert load_jsonl_examples(good)[0].label == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "a", "domain": "m", "label": 1}) + "\n" + json.dumps({"prompt": "b"}) + "\n"
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field\(s\) \['domain', 'label'\]"):
        load_jsonl_examples(bad)
    bad.write_text('{"prompt": "a", "domain": "m", "label": 2}\n')
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        load_jsonl_examples(bad)
    with pytest.raises(ValueError, match="unknown ASA split 'dev'"):
        load_asa_split("dev")


def test_alpaca_loader_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match="(datasets|could not load)"):
        load_alpaca_examples("some/dataset-that-is-not-cached")
