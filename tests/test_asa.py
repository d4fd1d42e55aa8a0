"""ASA: controller semantics on hand-made cases, every stage on a tiny model, asset round trip and errors."""

import json
from pathlib import Path

import pytest
import torch

from steerlab.asa.config import AsaConfig
from steerlab.asa.controller import AsaController, AsaParams, ternary_gate
from steerlab.asa.data import DOMAIN_TOOL, load_examples
from steerlab.asa.gate_stage import chosen_params, chosen_point
from steerlab.asa.prompt import PromptBuilder
from steerlab.asa.runtime import AsaSteerer
from steerlab.asa.stages import AsaInputs, run_all, runner
from steerlab.assets import AssetError
from steerlab.config import UserError
from steerlab.data.asa_data import load_asa_tools
from steerlab.probes import LogisticProbe, Router, Standardizer
from steerlab.runs import load_json, load_tensors
from steerlab.stages import ModelHolder
from steerlab.tools import call_stop


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
    coef, vec = AsaController(params, strength=0.5, tau=0.8, beta=1.0)(h)
    assert coef.tolist() == [5.0, -5.0, 0.0]  # gate * strength * mean_norm
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
    per_row = AsaController(params, 0.5, 0.8, beta=1.0, row_strength=torch.tensor([1.0, 0.0, 2.0]))(h)[0]
    assert per_row.tolist() == [10.0, 0.0, 0.0]  # per-row strengths; row 2's gate is 0 anyway


def test_prompt_builder_renders_few_shot_calls():
    pb = PromptBuilder(load_asa_tools())
    msgs = pb.messages("What is 3 + 4?")
    assert msgs[0]["role"] == "system" and "calculator(expression: string)" in msgs[0]["content"]
    assert msgs[2]["content"].startswith('<tool_call>{"name": "calculator"')
    assert msgs[-1] == {"role": "user", "content": "What is 3 + 4?"}
    with pytest.raises(ValueError, match="unknown tool-call format"):
        PromptBuilder([], call_format="yaml")


def test_config_errors():
    with pytest.raises(UserError, match="did you mean 'strengths'"):
        AsaConfig.from_dict({"strength": [1.0]})
    assert AsaConfig.from_dict({"alphas": [2.0]}).strengths == [2.0]  # the old name still works
    with pytest.raises(UserError, match="0.5 < tau < 1"):
        AsaConfig(taus=[0.5])
    with pytest.raises(UserError, match="0.0 < strength"):
        AsaConfig(strengths=[-1.0])
    with pytest.raises(UserError, match="strengths\\[1\\] must be a finite number"):
        AsaConfig.from_dict({"strengths": "0.5,nan"})
    with pytest.raises(UserError, match="call_format='yaml' is not allowed"):
        AsaConfig(call_format="yaml")


TINY_CFG = dict(
    preset="full",  # every row, every baseline and LoRA (the default job's rows: test_default_preset_rows)
    model="tiny",
    limit_per_cell=3,
    strengths=[0.5, 2.0],
    taus=[0.6, 0.9],
    betas=[0.0, 1.0],
    n_top_layers=1,
    extra_layers=[2],
    directions=["grad", "global", "asa", "behav"],
    string_pattern="^[^<}]{1,4}$",
    baselines=["none", "per_tool"],
    action_rows=6,
    max_new_tokens_call=140,  # a character tokenizer: one token per character of the call
    batch_size=8,
    n_boot=100,
)


def _runner(cfg, root, lm):
    models = ModelHolder()
    models.put(cfg.model, lm)
    return runner(cfg, root, progress=False, models=models)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_models):
    r = _runner(AsaConfig(**TINY_CFG), tmp_path_factory.mktemp("asa"), tiny_models("llama"))
    return r, run_all(r)


def _fitted(r, layer):
    t = load_tensors(r.path("fit") / f"params_L{layer}.safetensors")
    meta = load_json(r.path("fit") / "meta.json")
    return AsaParams.from_tensors(t, layer, meta["domains"], r.result("sweep")["mean_norm"][str(layer)])


def _states(r, split):
    return load_tensors(r.path("extract") / f"{split}.safetensors")["states"]


def test_tiny_pipeline_end_to_end(tiny_run):
    r, out = tiny_run
    ev = out["evaluate"]
    assert set(ev["rows"]) == {
        "baseline",
        "asa",
        "steer+cd",
        "prefill",
        "prefill+cd",
        "prefill+cd_model",
        "steer+prefill+cd",
        "paper",
        "no_gate",
        "global_only",
        "random",
        "negative",
        "oracle",
        "probe_only",
    }
    assert ev["gate_agreement_online_vs_offline"] == 1.0  # the online controller = the tuned offline gate
    assert ev["n_test"] == 48  # 3 single prompts and 3 conversations per domain x label
    pk = ev["per_kind"]
    assert pk["single"]["n"] == 24 and pk["conversation"]["n"] == 24
    assert set(pk["conversation"]) >= {"n", "baseline", "asa", ev["asset_row"], "paper"}
    # the extra-call rate is the trigger rate of the label-0 conversations, read back from the predictions
    preds = [json.loads(x) for x in (r.root / "evaluate" / "predictions.jsonl").read_text().splitlines()]
    convs = {e.id for e in load_examples("builtin", 3)["test"] if e.kind == "conversation"}
    for name in ("baseline", ev["asset_row"]):
        due = [
            p["triggered"] for p in preds if p["condition"] == name and p["id"] in convs and p["label"] == 0
        ]
        assert len(due) == 12 == pk["conversation"][name]["n_answer_due"]
        assert pk["conversation"][name]["extra_call_rate"][0] == pytest.approx(sum(due) / 12)
    for stage in (
        "extract",
        "sweep",
        "vectors",
        "fit",
        "screen",
        "tune",
        "gate",
        "actions",
        "evaluate",
        "baselines",
        "lora",
        "asset",
        "report",
    ):
        assert (r.root / stage / "_DONE.json").is_file()
    states = _states(r, "test")
    assert states.shape == (48, 4, 32)
    for png in (
        "sweep/probe_auc.png",
        "tune/strength_tau_f1.png",
        "tune/strength_edge.png",
        "evaluate/f1_by_domain.png",
    ):
        assert (r.root / png).stat().st_size > 1000
    report = (r.root / "report.md").read_text()
    # the report stage names its file where it lies once the stage is done, not its temporary folder
    assert Path(r.result("report")["report"]).read_text() == (r.path("report") / "report.md").read_text()
    assert "Goals on TEST" in report and "shots:per_tool" in report and "the paper's setting" in report
    assert "### Single prompts and conversations" in report and "| conversation (n=24) | baseline |" in report
    # a prefilled, constrained call parses and its arguments validate, wherever the gate opened (the tiny model's
    # router may name the wrong domain's tool: that is the router, not the grammar)
    from steerlab.tools import parse_tool_calls, validate_call

    cd = [p for p in preds if p["condition"] == "prefill+cd" and p["triggered"]]
    tools = load_asa_tools()
    for p in cd:
        calls = parse_tool_calls(p["output"], "tool_call_json").calls
        assert len(calls) == 1 and validate_call(calls[0], tools) == [], p["output"]
    assert cd
    # the LoRA baseline's targets: tool prompts a valid call of their own domain's tool, others no marker
    targets = [json.loads(x) for x in (r.root / "lora" / "targets.jsonl").read_text().splitlines()]
    assert len(targets) == 96 and sum(t["label"] for t in targets) == 48
    for t in targets:
        calls = parse_tool_calls(t["completion"], "tool_call_json").calls
        if t["label"] == 1:
            assert t["completion"].startswith("<tool_call>") and len(calls) == 1, t
            assert validate_call(calls[0], tools) == [] and calls[0].name == DOMAIN_TOOL[t["domain"]], t
        else:
            assert not t["completion"].lstrip().startswith("<"), t
    lora = r.result("lora")["rows"]["lora"]
    assert lora["n_train"] == 96 and lora["rank"] == 16 and "| lora |" in report
    tune = r.result("tune")
    assert tune["best"]["on_close"] == "forbid" and tune["paper"]["on_close"] == "push"
    assert tune["best"]["direction"] == AsaSteerer(r.models.get("tiny"), out["asset"]["path"]).point.direction
    assert {g["direction"] for g in json.loads((r.root / "tune" / "grid.json").read_text())} >= {
        "grad",
        "global",
        "asa",
    }


def test_the_direction_kind_is_named_direction_and_old_runs_still_read():
    """The screen, the tune grid and the tuned point name the direction kind ``direction`` (as OperatingPoint and
    the manifest do); a run written when it was ``kind`` is read the same."""
    from steerlab.asa.tuning import _key, _renamed, _variants, direction_of

    cfg = AsaConfig(directions=["grad", "asa"], betas=[0.5], strengths=[1.0])
    variants = _variants(cfg, [3], fitted=["grad"])
    assert [v["direction"] for v in variants] == ["grad", "asa"] and all("kind" not in v for v in variants)
    old = {"layer": 3, "kind": "grad", "beta": 0.0, "strength": 1.0}
    assert direction_of(old) == "grad" and _renamed(old) == variants[0]
    assert _key(old, "+") == _key(variants[0], "+") == "3|grad|0|1|+"


def test_stage_resume_and_param_change(tiny_run, tmp_path):
    import shutil

    done, _ = tiny_run
    root = tmp_path / "copy"
    shutil.copytree(done.root, root)  # the other tests read the original run
    lm = done.models.get("tiny")
    r = _runner(AsaConfig(**TINY_CFG), root, lm)
    marker = r.root / "extract" / "_DONE.json"
    before = marker.stat().st_mtime_ns
    r.run_all()
    assert marker.stat().st_mtime_ns == before and r.ran == []  # finished stages skipped
    r2 = _runner(AsaConfig(**{**TINY_CFG, "taus": [0.7]}), r.root, lm)
    r2.run_all()
    # taus: tune and what follows (the gate is chosen at the tuned tau), never the extraction or the screen
    assert r2.ran == ["tune", "gate", "actions", "evaluate", "asset", "report"]
    r3 = _runner(AsaConfig(**{**TINY_CFG, "taus": [0.7], "batch_size": 3, "n_boot": 50}), r.root, lm)
    r3.run_all()
    assert r3.ran == [
        "evaluate",
        "baselines",
        "lora",
        "report",
    ]  # batch size changes nothing; n_boot only the intervals
    r4 = _runner(AsaConfig(**{**TINY_CFG, "taus": [0.7], "n_boot": 50, "n_top_layers": 2}), r.root, lm)
    assert r4.run("sweep")["top_layers"].__len__() == 2 and r4.ran == ["sweep"]


def test_the_default_job_runs_the_rows_a_reader_needs(tiny_run, tmp_path):
    """The default preset: the steering row and the ablations by their trigger decision, the asset's action with its
    call decoded, no LoRA; the full search's stages before evaluate are reused as they are."""
    import shutil

    from steerlab.asa.evaluation import ACTION_ROW

    done, _ = tiny_run
    root = tmp_path / "default"
    shutil.copytree(done.root, root)
    r = _runner(AsaConfig(**{**TINY_CFG, "preset": "default"}), root, done.models.get("tiny"))
    r.run_all()
    assert r.ran == ["evaluate", "lora", "report"]
    rows = r.result("evaluate")["rows"]
    chosen = ACTION_ROW[r.result("actions")["chosen"]][1]
    ablations = {"paper", "no_gate", "global_only", "random", "negative", "oracle"}
    assert set(rows) == {"baseline", "asa", chosen, "probe_only"} | ablations
    assert rows[chosen]["calls_decoded"] and rows["baseline"]["calls_decoded"]
    assert not any(rows[k]["calls_decoded"] for k in ablations | {"asa"})
    assert r.result("lora") == {"rows": {}, "skipped": "lora_rank=0"}
    assert "Preset `default`" in (r.root / "report" / "report.md").read_text()
    assert AsaConfig().run_dir() != AsaConfig(preset="full").run_dir()
    assert AsaConfig(preset="full", lora_rank=4).lora_rank == 4  # a field the user set wins over the preset


def test_asset_round_trip_gives_identical_decisions(tiny_run):
    r, out = tiny_run
    lm = r.models.get("tiny")
    st = AsaSteerer(lm, out["asset"]["path"])
    assert (
        st.point.action
        == st.steering().point.action
        == out["asset"]["action"]
        == r.result("actions")["chosen"]
    )
    prompts = [e.prompt for e in AsaInputs(r.config).examples["test"][:6]]
    res = st.run(prompts, max_new_tokens=4)
    best = chosen_point(r)
    assert st.point.gate == best["gate"] == r.result("gate")["chosen"]["kind"]
    params = chosen_params(r, best)
    h = _states(r, "test")[:6]
    expected = ternary_gate(params.p_tool(h), best["tau"])
    assert [x.gate for x in res] == expected.int().tolist()
    torch.testing.assert_close(torch.tensor([x.p_tool for x in res]), params.p_tool(h), atol=1e-5, rtol=1e-5)


def test_a_reused_action_decides_each_call_afresh(tiny_run):
    """One bound action used for two calls: the second call's prompt 0 gets its own gate (and so its own prefill
    or none), not the first call's prompt 0's."""
    from steerlab.generation import generate

    r, out = tiny_run
    lm = r.models.get("tiny")
    st = AsaSteerer(lm, out["asset"]["path"])
    msgs = [st.builder.messages(e.prompt) for e in AsaInputs(r.config).examples["test"]]
    kw = dict(
        max_new_tokens=4,
        progress=False,
        tools=st.builder.tools if st.builder.use_template_tools else None,
    )
    probe = st.steering(action="prefill")
    generate(lm, msgs, row_setup=probe, **{**kw, "max_new_tokens": 1})
    gates = probe.decisions(len(msgs))["gate"].tolist()
    opens = [i for i, g in enumerate(gates) if g > 0]
    rest = [i for i, g in enumerate(gates) if g <= 0]
    assert opens and rest, gates
    first = [msgs[opens[0]], msgs[rest[0]]]  # prompt 0 opens
    second = [msgs[rest[0]], msgs[opens[0]]]  # prompt 0 does not
    reused = st.steering(action="prefill")
    generate(lm, first, row_setup=reused, **kw)
    again = generate(lm, second, row_setup=reused, **kw)
    fresh_action = st.steering(action="prefill")
    fresh = generate(lm, second, row_setup=fresh_action, **kw)
    assert [g.token_ids for g in again] == [g.token_ids for g in fresh]
    assert reused.decisions(2)["gate"].tolist() == fresh_action.decisions(2)["gate"].tolist()
    assert fresh[0].token_ids != fresh[1].token_ids[: len(fresh[0].token_ids)]  # the prefill shows


def test_old_names_of_the_trigger_mode_and_the_ablation_still_work_with_a_warning(tiny_run):
    """AsaSteerer.trigger_mode (what counts as a call) and steering(ablation=) (which ablation) have distinct names;
    the old ``mode`` spellings of both still work and say what replaced them."""
    r, out = tiny_run
    st = AsaSteerer(r.models.get("tiny"), out["asset"]["path"])
    with pytest.warns(DeprecationWarning, match="use AsaSteerer.trigger_mode"):
        assert st.mode == st.trigger_mode
    with pytest.warns(DeprecationWarning, match=r"use steering\(ablation=\)"):
        old = st.steering(mode="negative")
    assert old.mode == st.steering(ablation="negative").mode == "negative"


def test_asset_mismatch_and_tamper_errors(tiny_run, tiny_models):
    from steerlab.assets import manifest_digest

    r, out = tiny_run
    path = out["asset"]["path"]
    other = tiny_models("qwen3")  # same hidden size; the manifest is edited to claim another shape
    manifest = json.loads((r.root / "asset" / "manifest.json").read_text())
    manifest["hidden_size"] = 576
    bad = r.root / "asset_bad"
    bad.mkdir()
    (bad / "tensors.safetensors").write_bytes((r.root / "asset" / "tensors.safetensors").read_bytes())
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AssetError, match="modified after the asset was written"):
        AsaSteerer(other, bad)
    manifest["manifest_sha256"] = manifest_digest(manifest)  # a consistent manifest for another model
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AssetError, match="hidden size 576, this model has 32"):
        AsaSteerer(other, bad)
    data = bytearray((bad / "tensors.safetensors").read_bytes())
    (bad / "tensors.safetensors").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(AssetError, match="truncated or was modified"):
        AsaSteerer(other, bad)
    assert AsaSteerer(r.models.get("tiny"), path).params.layer == manifest["layer"]


@pytest.mark.embedded
def test_embedded_reduced_asa_run(smollm, tmp_path):
    """A small real run of the whole pipeline on SmolLM2-135M (the full run is `steerlab asa run`)."""
    cfg = AsaConfig(
        limit_per_cell=2,
        conversations=False,  # single prompts, as this check was set up (the tiny run covers conversations)
        strengths=[0.5],
        taus=[0.9],
        n_top_layers=1,
        extra_layers=[15],
        baselines=["none"],
        action_rows=4,
        max_new_tokens_call=48,
        batch_size=16,
        n_boot=200,
    )
    r = runner(cfg, tmp_path / "run", progress=False, models=ModelHolder())
    r.models.put("smollm2-135m", smollm)
    out = run_all(r)
    ev = out["evaluate"]
    assert ev["n_test"] == 16 and ev["gate_agreement_online_vs_offline"] == 1.0
    assert max(r.result("sweep")["auc_valid"].values()) > 0.8  # the tool/non-tool split is linearly readable
    assert out["asset"]["bytes"] < 200_000
    # the behaviour direction does what the mean difference does not: it makes the reply start a call
    screen = load_tensors(r.path("screen") / "screen.safetensors")
    y = AsaInputs(cfg).labels("valid") == 1
    base = screen["baseline::logp"][y].mean()
    assert screen["15|grad|0|0.5|+::logp"][y].mean() > base + 1.0


def test_data_fraction_keeps_that_share_of_every_cell(tmp_path):
    """The default job uses a quarter of the shipped dataset per split x domain x label x kind cell (TEST 200);
    --full and a user's own data use all of it; a bad fraction names the value and the range."""
    from collections import Counter

    from steerlab.asa.data import load_examples
    from steerlab.asa.inputs import AsaInputs

    def cells(ex):
        return Counter((e.split, e.domain, e.label, e.kind) for v in ex.values() for e in v)

    whole, half = load_examples("builtin"), load_examples("builtin", fraction=0.5)
    assert {k: -(-n // 2) for k, n in cells(whole).items()} == cells(half)
    for split in whole:  # the first of each cell, in file order
        first = Counter()
        want = []
        for e in whole[split]:
            cell = (e.domain, e.label, e.kind)
            first[cell] += 1
            if first[cell] <= -(-cells(whole)[(split, *cell)] // 2):
                want.append(e.id)
        assert [e.id for e in half[split]] == want
    assert AsaConfig().fraction() == 0.25 and len(AsaInputs(AsaConfig()).examples["test"]) == 200
    assert AsaConfig(preset="full").fraction() == 1.0
    assert AsaConfig(limit_per_cell=4).fraction() == 1.0  # a run the user sized already
    assert AsaConfig(data_fraction=0.25, preset="full").fraction() == 0.25  # set by the user: wins
    mine = tmp_path / "mine.jsonl"
    mine.write_text("{}")
    assert AsaConfig(data=str(mine)).fraction() == 1.0
    for bad in (0.0, 1.5, "most"):
        with pytest.raises(ValueError, match="data_fraction"):
            AsaConfig(data_fraction=bad)


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


def test_user_data_problems_name_the_domain_and_split(tmp_path):
    from steerlab.asa.data import check_domains_have_tools, load_examples, load_tools

    rows = [
        {"prompt": f"p{i}{s}", "domain": d, "label": i % 2, "split": s}
        for s in ("cal", "train", "valid", "test")
        for d in ("math", "weather")
        for i in range(2)
        if not (d == "weather" and s == "train" and i % 2 == 0)  # no non-tool weather prompt in TRAIN
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in rows))
    with pytest.raises(UserError, match="domain 'weather' has no non-tool \\(0\\) prompts in split 'train'"):
        load_examples(str(path))
    rows.append({"prompt": "w", "domain": "weather", "label": 0, "split": "train"})
    path.write_text("\n".join(json.dumps(x) for x in rows))
    ex = load_examples(str(path))
    tools, domain_tool = load_tools("builtin")
    with pytest.raises(UserError, match="domain\\(s\\) \\['weather'\\] of the ASA data have no tool"):
        check_domains_have_tools(ex, domain_tool, "builtin")
    mine = tmp_path / "tools.json"
    mine.write_text(json.dumps([{**tools[0], "domain": "math"}, {"name": "forecast", "domain": "weather"}]))
    tools2, dt2 = load_tools(str(mine))
    assert dt2 == {"math": "calculator", "weather": "forecast"} and "domain" not in tools2[1]
    check_domains_have_tools(ex, dt2, str(mine))


def test_every_edited_manifest_field_is_refused(tiny_run, tmp_path):
    """Editing any field of an ASA asset's manifest (layer 21 -> 5, mean_norm, tau...) fails to load."""
    import shutil

    r, out = tiny_run
    manifest = json.loads((r.root / "asset" / "manifest.json").read_text())
    lm = r.models.get("tiny")
    for key, value in manifest.items():
        if key == "manifest_sha256":
            continue
        edited = dict(manifest)
        edited[key] = (
            (value + 1) if isinstance(value, (int, float)) and not isinstance(value, bool) else "edited"
        )
        dest = tmp_path / key
        shutil.copytree(r.root / "asset", dest)
        (dest / "manifest.json").write_text(json.dumps(edited))
        with pytest.raises(
            AssetError, match="modified after the asset was written|format version|not a steerlab"
        ):
            AsaSteerer(lm, dest)


def test_screen_on_row_subsets_equals_the_full_screen_where_read(tiny_run):
    """The screen steers only the rows a push can matter for; those values equal steering every row."""
    from steerlab.generation import next_token_scores
    from steerlab.generation.rules import marker_start_ids
    from steerlab.steering import steer

    r, _ = tiny_run
    lm, cfg = r.models.get("tiny"), AsaConfig(**TINY_CFG)
    data = AsaInputs(cfg)
    screen = load_tensors(r.path("screen") / "screen.safetensors")
    y = torch.as_tensor(data.labels("valid"))
    layers = r.result("fit")["layers"]
    valid = _states(r, "valid")
    p = torch.stack([_fitted(r, layer).p_tool(valid[:, layer]) for layer in layers])
    ids = torch.tensor(marker_start_ids(lm.tokenizer, "<tool_call>"))
    msgs = data.messages("valid")
    base = next_token_scores(
        lm,
        msgs,
        {"b": None},
        progress=False,
        batch_size=5,
        reduce=lambda lg: torch.logsumexp(torch.log_softmax(lg, -1)[:, ids], -1),
    )["b"]
    torch.testing.assert_close(screen["baseline::logp"], base, atol=1e-4, rtol=1e-4)
    for sign, kind, read in (
        ("+", "grad", (p.max(0).values > 0.5) | (y == 1)),
        ("-", "asa", p.min(0).values < 0.5),
    ):
        layer, strength = layers[-1], cfg.strengths[-1]
        params = _fitted(r, layer)
        dirs = params.directions(params.route(valid[:, layer]), 1.0, kind)
        coef = (1 if sign == "+" else -1) * strength * params.mean_norm
        full = next_token_scores(
            lm,
            msgs,
            {
                "s": lambda idx, d=dirs, ly=layer, k=coef: steer(
                    lm, d[idx], layer=ly, coef=k, policy="prompt_last"
                )
            },
            progress=False,
            batch_size=5,
            reduce=lambda lg: torch.logsumexp(torch.log_softmax(lg, -1)[:, ids], -1),
        )["s"]
        got = screen[f"{layer}|{kind}|{1.0 if kind == 'asa' else 0:g}|{strength:g}|{sign}::logp"]
        assert read.any()
        torch.testing.assert_close(got[read], full[read], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got[~read], base[~read], atol=1e-4, rtol=1e-4)
    assert r.result("screen")["rows_screened"] < r.result("screen")["rows_full_grid"]


CONVERSATION = [
    {"role": "user", "content": "What is 1,234 times 5,678?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "1234*5678"}'},
            }
        ],
    },
    {"role": "tool", "content": "7006652"},
]


def test_served_reply_equals_the_evaluate_row_and_the_steerer(tiny_run):
    """What an agent receives is what was measured: for TEST prompts, the reply through the official openai client
    against steerlab serve (alone, batched with other requests, streamed) starts with the evaluate stage's output
    of the asset's row token for token, and AsaSteerer gives that output exactly; a conversation ending in a tool
    result gets the same reply from the server and from AsaSteerer."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("fastapi")
    from concurrent.futures import ThreadPoolExecutor

    from serve_helpers import running_server
    from steerlab.serve.app import create_app
    from steerlab.serve.engine import Engine

    r, out = tiny_run
    lm = r.models.get("tiny")
    row = r.result("evaluate")["asset_row"]
    preds = [json.loads(x) for x in (r.path("evaluate") / "predictions.jsonl").read_text().splitlines()]
    want = {p["id"]: p["output"] for p in preds if p["condition"] == row}
    test = AsaInputs(r.config).examples["test"]
    ex = [e for e in test if e.label == 1][:4] + [e for e in test if e.label == 0][:4]
    n_new = TINY_CFG["max_new_tokens_call"]
    st = AsaSteerer(lm, out["asset"]["path"])
    res = st.run([e.conversation for e in ex], max_new_tokens=n_new, full_answers=False)
    assert [x.steered.text for x in res] == [want[e.id] for e in ex]
    assert any(x.steered_triggered for x in res)  # the comparison covers calls, not only plain replies
    conv = st.run([CONVERSATION], max_new_tokens=n_new, full_answers=True)[0]

    engine = Engine(lm, out["asset"]["path"])
    with running_server(create_app(lambda: engine)) as base:
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)

        def ask(messages: list[dict], stream: bool = False) -> tuple[str, dict]:
            kw = dict(model=engine.model_id, messages=messages, tools=st.builder.tools, max_tokens=n_new)
            if not stream:
                resp = client.chat.completions.create(**kw)
                return resp.model_extra["steerlab"]["raw"], resp.model_extra["steerlab"]
            chunks = list(client.chat.completions.create(stream=True, **kw))
            extra = next(c.model_extra["steerlab"] for c in chunks if c.model_extra.get("steerlab"))
            return extra["raw"], extra

        msgs = [[{"role": "user", "content": e.prompt}] for e in ex]
        alone = [ask(m) for m in msgs]
        with ThreadPoolExecutor(len(msgs)) as pool:
            together = list(pool.map(ask, msgs))
        streamed = [ask(m, stream=True) for m in msgs]
        served_conv = ask(CONVERSATION)
    for e, x, a, t, s in zip(ex, res, alone, together, streamed):
        assert a[0].startswith(want[e.id]), (e.id, a[0], want[e.id])
        assert a[0] == t[0] == s[0]  # batched with others and streamed: the same reply
        assert a[1]["gate"] == x.gate and a[1]["p_tool"] == pytest.approx(x.p_tool, abs=1e-5)
    assert served_conv[0].startswith(conv.steered.text) and served_conv[1]["gate"] == conv.gate


def test_grad_direction_from_the_last_token_equals_the_whole_prompt_gradient(tiny_models):
    """The context computed once without autograd, only the last token differentiated: the same direction as the
    gradient through the whole prompt (causality: nothing before the last token depends on its state)."""
    from steerlab.asa.directions import _grad_directions_whole, grad_directions
    from steerlab.models import render_prompts, tokenize_texts

    lm = tiny_models("llama")
    pb = PromptBuilder(load_asa_tools())
    prompts = [
        pb.messages(p) for p in ("What is 3+4?", "Translate hello into French", "Why is the sky blue?")
    ]
    fast = grad_directions(lm, prompts, [0, 1], [5, 7], batch_size=2, progress=False)
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts))
    whole = _grad_directions_whole(lm, ids, [0, 1], [5, 7], "block", 3, False)
    for k in (0, 1):
        torch.testing.assert_close(fast[k], whole[k], atol=1e-5, rtol=0)
        assert fast[k].norm() == pytest.approx(1.0, abs=1e-5)


def test_a_complete_calls_closer_is_appended_without_a_forward_per_token(tiny_models, monkeypatch):
    """Once the grammar says the call is complete, the closer is fixed: decoding appends it and stops the row, with
    the same text as forcing it token by token, and fewer forwards."""
    import steerlab.generation.decode as dec
    from steerlab.asa.apply import call_rules
    from steerlab.generation import generate

    lm = tiny_models("llama")
    tools = load_asa_tools()
    prompts = [PromptBuilder(tools).messages(p) for p in ("What is 3+4?", "Translate hi", "Hello there")]
    rule = lambda: call_rules(  # noqa: E731
        lm,
        "tool_call_json",
        opens=lambda i: i != 2,
        closes=lambda i: i == 2,
        tools=tools,
        tool_of=lambda i: ["calculator", "translator", None][i],
        string_pattern="^[^<}]{1,4}$",
    )
    kw = dict(max_new_tokens=140, batch_size=3, stop=call_stop("tool_call_json", "prefix"), progress=False)
    forwards = []
    real = lm.model.forward

    def counting(*a, **k):
        forwards.append(1)
        return real(*a, **k)

    monkeypatch.setattr(lm.model, "forward", counting)
    fast = generate(lm, prompts, logits_rule=rule(), **kw)
    n_fast, forwards[:] = len(forwards), []
    monkeypatch.setattr(dec, "_tail", lambda *a: [])
    slow = generate(lm, prompts, logits_rule=rule(), **kw)
    assert [g.text for g in fast] == [g.text for g in slow]
    assert [g.stopped_by for g in fast] == [g.stopped_by for g in slow]
    assert fast[0].text.endswith("</tool_call>") and fast[1].text.endswith("</tool_call>")
    assert n_fast <= len(forwards) - (len("</tool_call>") - 1)  # the closer's tokens ran no forward


def test_the_full_search_says_its_time_before_it_starts(tiny_models):
    from steerlab.asa.budget import describe, estimate

    lm = tiny_models("llama")
    stages = ["extract", "screen", "actions", "evaluate", "baselines", "lora", "report"]
    full = {k: s for k, s, _ in estimate(AsaConfig(**{**TINY_CFG, "preset": "full"}), lm, stages)}
    assert set(full) == {"screen", "actions", "evaluate", "baselines", "lora"}
    assert all(s > 0 for s in full.values())
    default = {k: s for k, s, _ in estimate(AsaConfig(**{**TINY_CFG, "preset": "default"}), lm, stages)}
    assert "lora" not in default and default["evaluate"] < full["evaluate"]  # fewer rows decode calls
    assert estimate(AsaConfig(**TINY_CFG), lm, ["report"]) == []  # stages already done are not estimated
    assert "rough time estimate" in describe(estimate(AsaConfig(**TINY_CFG), lm, stages))
    gate = dict(
        (k, w) for k, _, w in estimate(AsaConfig(**{**TINY_CFG, "gate_data": ["varied"]}), lm, ["gate"])
    )
    assert set(gate) == {"gate"} and "prompts with their own tool lists (varied)" in gate["gate"]
    assert (
        estimate(AsaConfig(**{**TINY_CFG, "gate_data": []}), lm, ["gate"]) == []
    )  # no gate data: nothing read


def test_reduction_keeps_conversations_and_they_can_be_left_out():
    from collections import Counter

    full = load_examples("builtin", 2)
    for v in full.values():
        assert Counter(e.kind for e in v) == {"single": 16, "conversation": 16}
    single = load_examples("builtin", 2, conversations=False)
    for s, v in single.items():
        assert [e for e in full[s] if e.kind == "single"] == v
    cfg = AsaConfig(model="tiny", limit_per_cell=2, conversations=False)
    assert AsaInputs(cfg).examples == single


def test_the_shared_prefix_is_computed_once_for_the_stages_that_read_the_same_prompts(tiny_run):
    """Each stage's _DONE.json says how many shared-prefix caches it computed and how many it reused: the stages
    after the first that reads the TEST/VALID prompts reuse their system prompt and tool list's cache."""
    r, _ = tiny_run
    done = {s: load_json(r.path(s) / "_DONE.json") for s in ("extract", "actions", "evaluate")}
    stats = {s: d.get("prefix_cache", {}) for s, d in done.items()}
    # extract asks for the head first (an earlier test may have computed it already)
    assert stats["extract"]["computed"] + stats["extract"]["reused"] >= 1
    for stage in ("actions", "evaluate"):  # after the gate's one-off tool lists passed through
        assert stats[stage]["computed"] == 0 and stats[stage]["reused"] >= 1
