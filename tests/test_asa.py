"""ASA: controller semantics on hand-made cases, every stage on a tiny model, asset round trip and errors."""

import json

import pytest
import torch

from steerlab.asa.config import AsaConfig
from steerlab.asa.controller import AsaController, AsaParams, ternary_gate
from steerlab.asa.pipeline import AsaRun, run_all, stage_extract, stage_sweep
from steerlab.asa.prompt import PromptBuilder
from steerlab.asa.runtime import AsaSteerer
from steerlab.asa.triggers import call_stop, call_success, decision_stop, is_triggered
from steerlab.assets import AssetError
from steerlab.data.asa_data import load_asa_tools
from steerlab.probes import LogisticProbe, Router, Standardizer


def test_ternary_gate_is_strict():
    p = torch.tensor([0.95, 0.7, 0.5, 0.3, 0.2, 0.05])
    assert ternary_gate(p, 0.7).tolist() == [1.0, 0.0, 0.0, 0.0, -1.0, -1.0]  # p = tau and p = 1 - tau give 0
    for bad in (0.5, 1.0, 0.3):
        with pytest.raises(ValueError, match="0.5 < tau < 1"):
            ternary_gate(p, bad)


def _params(d=4):
    ident = Standardizer(torch.zeros(d), torch.ones(d))
    router = Router(ident, torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]), torch.zeros(2), ["a", "b"])
    probes = {k: LogisticProbe(ident, torch.tensor([0, 0, 1.0, 0]), torch.tensor(0.0)) for k in "ab"}
    return AsaParams(
        layer=1,
        domains=["a", "b"],
        router=router,
        probes=probes,
        v_domain={"a": torch.tensor([1.0, 0, 0, 0]), "b": torch.tensor([0, 1.0, 0, 0])},
        v_global=torch.tensor([0, 0, 0, 1.0]),
        mean_norm=10.0,
    )


def test_controller_exact_values_and_modes():
    params = _params()
    h = torch.tensor(
        [[5.0, 0, 3, 0], [0, 5.0, -3, 0], [5.0, 0, 0, 0]]
    )  # domain a / p high, b / p low, a / p=.5
    coef, vec = AsaController(params, alpha=0.5, tau=0.8, beta=1.0)(h)
    assert coef.tolist() == [5.0, -5.0, 0.0]  # gate * alpha * mean_norm
    s = 2**-0.5
    torch.testing.assert_close(vec, torch.tensor([[s, 0, 0, s], [0, s, 0, s], [s, 0, 0, s]]))
    assert AsaController(params, 0.5, 0.8, mode="no_gate")(h)[0].tolist() == [5.0, 5.0, 5.0]
    assert torch.equal(AsaController(params, 0.5, 0.8, beta=1.0, mode="negative")(h)[1], -vec)
    torch.testing.assert_close(AsaController(params, 0.5, 0.8, mode="global_only")(h)[1][0], params.v_global)
    oracle = AsaController(params, 0.5, 0.8, mode="oracle", oracle_labels=torch.tensor([0, 1, 1]))
    assert oracle(h)[0].tolist() == [-5.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="unknown ASA mode"):
        AsaController(params, 0.5, 0.8, mode="sideways")
    with pytest.raises(ValueError, match="oracle_labels"):
        AsaController(params, 0.5, 0.8, mode="oracle")


def test_triggers_and_call_success():
    fmt = "tool_call_json"
    assert is_triggered(' <tool_call>{"name"', fmt) and not is_triggered("Sure <tool_call>", fmt)
    assert is_triggered("Sure <tool_call>", fmt, mode="anywhere")
    stop = decision_stop(fmt)
    assert stop("The") and stop("<tool_call>") and not stop("<tool")
    cstop = call_stop(fmt)
    assert (
        not cstop('<tool_call>{"name": "x"') and cstop('<tool_call>{"name": "x"}</tool_call>') and cstop("No")
    )
    tools = load_asa_tools()
    ok = '<tool_call>{"name": "calculator", "arguments": {"expression": "2*3"}}</tool_call>'
    assert call_success(ok, fmt, tools, "calculator") == (True, "ok")
    assert call_success(ok, fmt, tools, "web_search")[1] == "called calculator, expected web_search"
    assert not call_success(
        '<tool_call>{"name": "calculator", "arguments": {}}</tool_call>', fmt, tools, None
    )[0]


def test_prompt_builder_renders_few_shot_calls():
    pb = PromptBuilder(load_asa_tools())
    msgs = pb.messages("What is 3 + 4?")
    assert msgs[0]["role"] == "system" and "calculator(expression: string)" in msgs[0]["content"]
    assert msgs[2]["content"].startswith('<tool_call>{"name": "calculator"')
    assert msgs[-1] == {"role": "user", "content": "What is 3 + 4?"}
    with pytest.raises(ValueError, match="unknown tool-call format"):
        PromptBuilder([], call_format="yaml")


def test_config_errors():
    with pytest.raises(ValueError, match="did you mean 'alphas'"):
        AsaConfig.from_dict({"alpha": [1.0]})
    with pytest.raises(ValueError, match="0.5 < tau < 1"):
        AsaConfig(taus=[0.5])
    with pytest.raises(ValueError, match="alphas must be positive"):
        AsaConfig(alphas=[-1.0])


TINY_CFG = dict(
    model="tiny",
    limit_per_cell=3,
    alphas=[0.5],
    taus=[0.6, 0.9],
    betas=[0.0, 1.0],
    n_top_layers=1,
    extra_layers=[2],
    max_new_tokens_decision=4,
    max_new_tokens_call=6,
    batch_size=8,
    n_boot=100,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_models):
    r = AsaRun(AsaConfig(**TINY_CFG), tmp_path_factory.mktemp("asa"), progress=False)
    r._lm = tiny_models("llama")
    return r, run_all(r)


def test_tiny_pipeline_end_to_end(tiny_run):
    r, out = tiny_run
    ev = out["evaluate"]
    assert set(ev["rows"]) == {
        "baseline",
        "asa",
        "no_gate",
        "global_only",
        "domain_only",
        "random",
        "negative",
        "oracle",
        "probe_only",
    }
    assert ev["gate_agreement_online_vs_offline"] == 1.0  # the online controller = the tuned offline gate
    assert ev["n_test"] == 24
    for stage in ("extract", "sweep", "vectors", "fit", "tune", "evaluate"):
        assert (r.root / stage / "_DONE.json").is_file()
    states = r.states("test")
    assert states.shape == (24, 4, 32)
    for png in ("sweep/probe_auc.png", "tune/alpha_tau_f1.png", "evaluate/f1_by_domain.png"):
        assert (r.root / png).stat().st_size > 1000
    assert "Goal (ΔF1 ≥ +0.15" in (r.root / "report.md").read_text()


def test_stage_resume_and_param_change(tiny_run):
    r, _ = tiny_run
    marker = r.root / "extract" / "_DONE.json"
    before = marker.stat().st_mtime_ns
    stage_extract(r)
    assert marker.stat().st_mtime_ns == before  # finished stage skipped
    r2 = AsaRun(AsaConfig(**{**TINY_CFG, "n_top_layers": 2}), r.root, progress=False)
    r2._lm = r._lm
    assert r2.run.is_done("extract", r2.params_key("extract")) is False  # config changed -> recomputed
    assert stage_sweep(r2)["top_layers"].__len__() == 2


def test_asset_round_trip_gives_identical_decisions(tiny_run):
    r, out = tiny_run
    lm = r.lm
    st = AsaSteerer(lm, out["export"]["path"])
    prompts = [e.prompt for e in r.examples["test"][:6]]
    res = st.run(prompts, max_new_tokens=4)
    best = json.loads((r.root / "tune" / "best.json").read_text())["best"]
    params = r.layer_params(best["layer"])
    h = r.states("test")[:6, best["layer"]]
    expected = ternary_gate(params.p_tool(h), best["tau"])
    assert [x.gate for x in res] == expected.int().tolist()
    torch.testing.assert_close(torch.tensor([x.p_tool for x in res]), params.p_tool(h), atol=1e-5, rtol=1e-5)


def test_asset_mismatch_and_tamper_errors(tiny_run, tiny_models):
    r, out = tiny_run
    path = out["export"]["path"]
    other = tiny_models("qwen3")  # same hidden size, but let's tamper the manifest's shape claims
    manifest = json.loads((r.root / "asset" / "manifest.json").read_text())
    manifest["hidden_size"] = 576
    bad = r.root / "asset_bad"
    bad.mkdir()
    (bad / "tensors.safetensors").write_bytes((r.root / "asset" / "tensors.safetensors").read_bytes())
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AssetError, match="hidden size 576, this model has 32"):
        AsaSteerer(other, bad)
    data = bytearray((bad / "tensors.safetensors").read_bytes())
    (bad / "tensors.safetensors").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(AssetError, match="truncated or was modified"):
        AsaSteerer(other, bad)
    assert AsaSteerer(r.lm, path).params.layer == manifest["layer"]


@pytest.mark.embedded
def test_embedded_reduced_asa_run(smollm, tmp_path):
    """A small real run of the whole pipeline on SmolLM2-135M (the full run is `steerlab asa run`)."""
    cfg = AsaConfig(
        limit_per_cell=2,
        alphas=[0.5],
        taus=[0.6],
        betas=[0.0],
        n_top_layers=1,
        extra_layers=[18],
        max_new_tokens_call=24,
        batch_size=16,
        n_boot=200,
    )
    r = AsaRun(cfg, tmp_path / "run", progress=False)
    r._lm = smollm
    out = run_all(r)
    ev = out["evaluate"]
    assert ev["n_test"] == 16 and ev["gate_agreement_online_vs_offline"] == 1.0
    sweep = json.loads((r.root / "sweep" / "sweep.json").read_text())
    assert max(sweep["auc_valid"].values()) > 0.8  # the tool/non-tool split is linearly readable
    assert out["export"]["bytes"] < 200_000


def test_user_jsonl_with_splits(tmp_path):
    from steerlab.asa.data import load_examples

    lines = [
        {"prompt": f"p{i}", "domain": "math", "label": i % 2, "split": s}
        for s in ("cal", "train", "valid", "test")
        for i in range(4)
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    ex = load_examples(str(path), limit_per_cell=1)
    assert {s: len(v) for s, v in ex.items()} == {"cal": 2, "train": 2, "valid": 2, "test": 2}
    path.write_text(json.dumps({"prompt": "x", "domain": "m", "label": 1}))
    with pytest.raises(ValueError, match="every line needs a split"):
        load_examples(str(path))
    path.write_text(json.dumps({"prompt": "x", "domain": "m", "label": 1, "split": "dev"}))
    with pytest.raises(ValueError, match="split 'dev' is not one of"):
        load_examples(str(path))
