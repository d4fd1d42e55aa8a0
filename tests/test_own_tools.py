"""Bring your own tools: `steerlab asa run --tools --data` fits a reduced asset on a tool set that is not the
shipped one (a tiny model saved to disk, loaded by path, as a user's model would be); the asset's prompt never shows
a tool the request does not offer; it is served with the user's tools; the learning curve runs per size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerlab.asa.curve import subset_jsonl
from steerlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "examples" / "own-tools" / "my_tools.json"
DATA = ROOT / "examples" / "own-tools" / "my.jsonl"
REDUCED = [
    "--limit-per-cell", "3", "--strengths", "0.5", "--taus", "0.6,0.9", "--betas", "0.0", "--n-top-layers", "1",
    "--extra-layers", "[]", "--directions", "global", "--baselines", "", "--lora-rank", "0",
    "--max-new-tokens-call", "90", "--string-pattern", "^[^<}]{1,4}$", "--action-rows", "4", "--n-boot", "50",
    "--gate-cs", "0.01", "--batch-size", "8",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_models):
    lm = tiny_models("llama")
    d = tmp_path_factory.mktemp("tiny-model")
    lm.model.save_pretrained(d)
    lm.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def own_run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "run"
    args = [
        "asa",
        "run",
        "-q",
        "--model",
        str(tiny_dir),
        "--tools",
        str(TOOLS),
        "--data",
        str(DATA),
        "--out",
        str(out),
    ]
    assert main([*args, *REDUCED]) == 0
    return out


def test_the_example_data_is_separate_and_balanced():
    rows = [json.loads(x) for x in DATA.read_text().splitlines()]
    tools = json.loads(TOOLS.read_text())
    names = {t["function"]["name"] for t in tools}
    assert names == {"get_weather", "convert_units", "calendar"} and not names & {"calculator", "web_search"}
    fit = {r["prompt"] for r in rows if r["split"] != "test"}
    test = {r["prompt"] for r in rows if r["split"] == "test"}
    assert fit and test and not fit & test
    for split, n in (("cal", 24), ("train", 24), ("valid", 24), ("test", 40)):
        for dom in ("weather", "units", "calendar"):
            for label in (0, 1):
                cell = [r for r in rows if (r["split"], r["domain"], r["label"]) == (split, dom, label)]
                assert len(cell) == n, (split, dom, label)


def test_cli_fits_an_asset_on_the_users_own_tools(own_run, tiny_dir):
    from steerlab.asa.runtime import AsaSteerer
    from steerlab.models import load_model

    manifest = json.loads((own_run / "asset" / "manifest.json").read_text())
    assert {tool["function"]["name"] for tool in manifest["tools"]} == {
        "get_weather",
        "convert_units",
        "calendar",
    }
    assert manifest["domain_tools"] == {
        "weather": "get_weather",
        "units": "convert_units",
        "calendar": "calendar",
    }
    assert manifest["gate"] in ("domain", "shared", "all_layers")
    gate = json.loads((own_run / "gate" / "result.json").read_text())
    assert gate["chosen"]["kind"] == manifest["gate"] and {c["kind"] for c in gate["candidates"]} == {
        "domain",
        "shared",
        "all_layers",
    }
    assert all(s.startswith(("run:", "asa:")) for s in manifest["gate_fit_sources"])  # no BFCL unless asked
    # the shipped few-shot call shows calculator: with these tools only the plain answer is shown
    st = AsaSteerer(load_model(str(tiny_dir)), own_run / "asset")
    shown = [m["content"] for m in st.builder.messages("Will it rain in Oslo?")]
    assert not any("calculator" in text for text in shown)
    assert "get_weather" in shown[0]
    res = st.run(["Will it rain in Oslo tomorrow?", "Why is the sky blue?"], max_new_tokens=4)
    assert [r.domain for r in res][0] in {"weather", "units", "calendar"}


def test_the_asset_is_served_with_the_users_tools(own_run, tiny_dir):
    pytest.importorskip("fastapi")
    openai = pytest.importorskip("openai")
    from serve_helpers import running_server
    from steerlab.models import load_model
    from steerlab.serve.app import create_app
    from steerlab.serve.engine import Engine

    tools = [{k: v for k, v in t.items() if k != "domain"} for t in json.loads(TOOLS.read_text())]
    engine = Engine(load_model(str(tiny_dir)), own_run / "asset")
    with running_server(create_app(lambda: engine)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused")
        r = client.chat.completions.create(
            model=engine.model_id,  # the served model id (an unknown one is 404)
            tools=tools,
            max_tokens=8,
            messages=[{"role": "user", "content": "Will it rain in Lisbon tomorrow?"}],
        )
    s = r.model_extra["steerlab"]
    assert (
        s["gate"] in (-1, 0, 1)
        and 0.0 <= s["p_tool"] <= 1.0
        and s["domain"] in {"weather", "units", "calendar"}
    )
    for call in r.choices[0].message.tool_calls or []:
        assert call.function.name in {"get_weather", "convert_units", "calendar"}


def test_curve_subsets_cut_fit_splits_and_keep_test(tmp_path):
    out = subset_jsonl(str(DATA), 4, tmp_path / "d.jsonl")
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    counts = {}
    for r in rows:
        counts[(r["split"], r["domain"], r["label"])] = (
            counts.get((r["split"], r["domain"], r["label"]), 0) + 1
        )
    assert {v for k, v in counts.items() if k[0] != "test"} == {4} and {
        v for k, v in counts.items() if k[0] == "test"
    } == {40}
    first = [json.loads(x) for x in DATA.read_text().splitlines() if json.loads(x)["split"] == "cal"][:4]
    assert [r["prompt"] for r in rows[:4]] == [r["prompt"] for r in first]  # the first N, in file order


def test_curve_fits_once_per_size_and_reports_test(tmp_path, tiny_models):
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.curve import run_curve
    from steerlab.stages import ModelHolder

    rows = [json.loads(x) for x in DATA.read_text().splitlines()]
    keep, seen = [], {}
    for r in rows:  # TEST cut to 2 per cell so the tiny model decodes little; the fit splits stay whole
        k = (r["split"], r["domain"], r["label"])
        seen[k] = seen.get(k, 0) + 1
        if r["split"] != "test" or seen[k] <= 2:
            keep.append(r)
    data = tmp_path / "small.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in keep))
    cfg = AsaConfig(
        model="tiny",
        data=str(data),
        tools=str(TOOLS),
        strengths=[0.5],
        taus=[0.6],
        betas=[0.0],
        n_top_layers=1,
        directions=["global"],
        actions=["prefill"],
        baselines=[],
        lora_rank=0,
        max_new_tokens_call=40,
        string_pattern="^[^<}]{1,4}$",
        action_rows=2,
        n_boot=20,
        gate_cs=[0.01],
    )
    models = ModelHolder()
    models.put("tiny", tiny_models("llama"))
    res = run_curve(cfg, [3, 2], tmp_path / "report", runs=tmp_path / "runs", progress=False, models=models)
    assert [p["per_cell"] for p in res["points"]] == [2, 3]
    for p in res["points"]:
        assert p["n"]["test"] == 12 and p["n"]["cal"] == 6 * p["per_cell"]
        assert p["row"] == "prefill+cd" and 0.0 <= p["f1"][0] <= 1.0
        assert (tmp_path / "runs" / p["run"] / "asset" / "manifest.json").is_file()
    for name in ("curve.json", "curve.md", "curve.png"):
        assert (tmp_path / "report" / name).stat().st_size > 100
    assert not (tmp_path / "report" / "n2").exists()  # run directories stay out of the report folder
