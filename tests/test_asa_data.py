import json
from collections import Counter

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

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


def test_sizes_and_balance():
    for split in ASA_SPLITS:
        ex = load_asa_split(split)
        assert len(ex) == SIZES[split]
        cells = Counter((e.domain, e.label) for e in ex)
        assert set(cells) == {(d, lab) for d in ASA_DOMAINS for lab in (0, 1)}
        assert set(cells.values()) == {SIZES[split] // 8}
        assert len({e.id for e in ex}) == len(ex)


def test_no_duplicates_or_near_duplicates_across_splits():
    ex = [(s, e.prompt) for s in ASA_SPLITS for e in load_asa_split(s)]
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
