"""Gates that read "one of the offered tools is needed": exact calibration, asset round trip, the all-layer gate
read online equal to the gate on captured states, and the gate data with tools in the context."""

import json

import numpy as np
import pytest
import torch

from steerlab.asa.contexts import bfcl_contexts, content_words, varied_contexts
from steerlab.asa.controller import AsaParams
from steerlab.asa.gates import ProbeGate, fit_gate, fpr_threshold, gate_layers
from steerlab.asa.point import OperatingPoint
from steerlab.asa.prompt import PromptBuilder
from steerlab.capture import capture
from steerlab.data.asa_data import AsaExample
from steerlab.generation import generate_conditions
from steerlab.probes import LogisticProbe, Router, Standardizer, fit_router


def test_fpr_threshold_exact():
    neg = np.arange(10.0)  # logits 0..9
    assert fpr_threshold(neg, 0.2) == 7.0  # 8 and 9 lie above: 2 of 10
    assert fpr_threshold(neg, 0.0) == 9.0  # nothing above
    assert fpr_threshold(neg, 0.25) == 7.0  # floor(2.5) = 2 allowed
    assert fpr_threshold(neg, 1.0) < 0.0  # everything above
    with pytest.raises(ValueError, match="held-out negatives"):
        fpr_threshold([], 0.1)


def _gate(kind="shared", layer=2, d=3):
    ident = Standardizer(
        torch.zeros(d * len(gate_layers(kind, layer))), torch.ones(d * len(gate_layers(kind, layer)))
    )
    w = torch.arange(1.0, 1.0 + d * len(gate_layers(kind, layer)))
    return ProbeGate(kind, gate_layers(kind, layer), LogisticProbe(ident, w, torch.tensor(-1.0)))


def test_calibrated_gate_opens_exactly_at_the_threshold():
    g = _gate("all_layers", layer=1, d=2)  # reads layers 0 and 1: weights 1, 2, 3, 4
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # logit = 1 + 4 - 1 = 4
    assert g.logit(x).item() == pytest.approx(4.0)
    cal = g.calibrated(threshold=4.0, tau=0.8)
    assert cal.prob(x).item() == pytest.approx(0.8)
    assert cal.prob(x * 1.01).item() > 0.8 > cal.prob(x * 0.99).item()
    assert g.probe.bias.item() == -1.0  # the original is unchanged


def test_gate_layers_and_errors():
    assert gate_layers("shared", 5) == (5,)
    assert gate_layers("all_layers", 2) == (0, 1, 2)
    with pytest.raises(ValueError, match="unknown gate 'wide'"):
        gate_layers("wide", 2)
    g = _gate("all_layers", layer=2)
    with pytest.raises(ValueError, match=r"give states \[batch, layers, d\]"):
        g.prob(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="layers up to 2"):
        g.prob(torch.zeros(2, 2, 3))


def _params(gate=None, layer=2, d=3):
    ident = Standardizer(torch.zeros(d), torch.ones(d))
    router = Router(ident, torch.eye(2, d), torch.zeros(2), ["a", "b"])
    probes = {k: LogisticProbe(ident, torch.ones(d), torch.tensor(0.0)) for k in "ab"}
    return AsaParams(
        layer, ["a", "b"], router, probes, {k: torch.ones(d) for k in "ab"}, torch.ones(d), 2.0, gate=gate
    )


def test_params_with_a_gate_round_trip_and_use_it():
    x = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(0))
    for kind in ("shared", "all_layers"):
        p = _params(_gate(kind))
        back = AsaParams.from_tensors(p.tensors(), 2, ["a", "b"], 2.0)
        assert back.gate_kind == kind and back.gate_layers == gate_layers(kind, 2)
        torch.testing.assert_close(back.p_tool(x), torch.sigmoid(_gate(kind).logit(x)))
    shared = _params(_gate("shared"))
    torch.testing.assert_close(shared.p_tool(x[:, 2]), shared.p_tool(x))  # the state at its layer is enough
    with pytest.raises(ValueError, match="all_layers gate reads layers"):
        _params(_gate("all_layers")).p_tool(x[:, 2])
    plain = _params()
    assert plain.gate_kind == "domain" and "gate.weight" not in plain.tensors()
    torch.testing.assert_close(plain.p_tool(x), plain.p_tool(x[:, 2]))


def test_point_gate_field_manifest_and_mismatch(tiny_models):
    pt = OperatingPoint(layer=2, strength=0.5, tau=0.8, action="prefill", gate="all_layers")
    assert OperatingPoint.from_manifest(pt.to_manifest()) == pt
    legacy = {k: v for k, v in pt.to_manifest().items() if k != "gate"}
    assert OperatingPoint.from_manifest(legacy).gate == "domain"  # assets written before gates existed
    with pytest.raises(ValueError, match="gate='wide' is not allowed"):
        OperatingPoint(layer=2, strength=0.5, tau=0.8, gate="wide")
    lm = tiny_models("llama")
    with pytest.raises(
        ValueError, match="point's gate is 'all_layers' but the fitted parameters hold a 'domain'"
    ):
        pt.bind(lm, _params(d=lm.hidden_size))


@pytest.mark.parametrize("kind", ["shared", "all_layers"])
def test_gate_read_during_generation_equals_the_gate_on_captured_states(tiny_models, kind):
    """The decision the generation hook takes (an all-layer gate reading earlier layers through extra hooks) is the
    gate applied to states captured at every layer, row by row, in a padded batch with a shared prefix."""
    lm = tiny_models("llama")
    layer = 2
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]
    pb = PromptBuilder(tools, few_shot=[])
    prompts = [
        "hi",
        "what is two plus two",
        "run it",
        "a much longer prompt about the weather in Oslo",
        "x y",
    ]
    msgs = [pb.messages(p) for p in prompts]
    acts = capture(lm, msgs, layers=list(range(layer + 1)), progress=False)
    h = torch.stack([acts[k] for k in range(layer + 1)], dim=1)
    y = np.array([1, 0, 1, 0, 1])
    gate = fit_gate(kind, layer, h, y, c=1.0)
    z = gate.logit(h).sort().values
    gate = gate.calibrated(float(z[2] + z[3]) / 2, 0.6)  # between two rows: two open, three do not
    router = fit_router(h[:, layer], ["a", "b", "a", "b", "a"])
    probes = {k: LogisticProbe(router.scaler, torch.zeros(lm.hidden_size), torch.tensor(0.0)) for k in "ab"}
    v = {k: torch.ones(lm.hidden_size) for k in "ab"}
    params = AsaParams(layer, ["a", "b"], router, probes, v, torch.ones(lm.hidden_size), 1.0, gate=gate)
    point = OperatingPoint(layer=layer, strength=0.5, tau=0.6, action="prefill", gate=kind)
    act = point.bind(lm, params, tools)
    gens = generate_conditions(lm, msgs, {"asa": act}, max_new_tokens=11, batch_size=3, progress=False)
    dec = act.decisions(len(prompts))
    expected = gate.prob(h)
    torch.testing.assert_close(dec["p_tool"], expected, atol=1e-5, rtol=1e-4)
    opened = expected > 0.6
    assert opened.any() and (~opened).any()
    for g, o in zip(gens["asa"], opened):
        assert g.text.startswith("<tool_call>") == bool(o)  # an open gate prefills the marker


def test_varied_contexts_label_by_the_tools_offered():
    tools = [
        {"type": "function", "function": {"name": n, "description": d, "parameters": {}}}
        for n, d in [("get_weather", "weather now"), ("convert_units", "units"), ("calendar", "events")]
    ]
    dt = {"weather": "get_weather", "units": "convert_units", "calendar": "calendar"}
    conv = (
        {"role": "user", "content": "weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {}}}],
        },
        {"role": "tool", "content": "sunny"},
    )
    ex = [AsaExample(f"e{i}", f"prompt {i}", "weather", i % 2, "cal") for i in range(40)]
    ex.append(AsaExample("c0", "weather in Oslo?", "weather", 0, "train", conv))
    pool = [[{"type": "function", "function": {"name": "stock_price", "description": "ticker quote"}}]]
    out = varied_contexts(ex, tools, dt, pool, seed=1)
    assert len(out) == len(ex)
    for e, x in zip(ex, out):
        names = {t["function"]["name"] for t in x.tools}
        assert x.label == (e.label if "get_weather" in names else 0)
        assert x.kind == ("own" if "get_weather" in names else "without_tool")
    assert {x.kind for x in out} == {"own", "without_tool"}
    assert "get_weather" in {t["function"]["name"] for t in out[-1].tools}  # a conversation keeps its tool
    assert isinstance(out[-1].messages, list)


def test_bfcl_contexts_pair_each_request_with_unrelated_functions():
    from steerlab.data.bfcl import load_bfcl

    items = load_bfcl("simple_javascript")
    ctx = bfcl_contexts(items, seed=0)
    own = [c for c in ctx if c.kind == "own"]
    neg = [c for c in ctx if c.kind == "mismatched"]
    assert len(own) == len(items) and all(c.label == 1 for c in own)
    assert neg and all(c.label == 0 for c in neg)
    by_id = {it.id: it for it in items}
    for c in neg:
        it, other = by_id[c.group], by_id[c.meta["functions_of"]]
        assert other.id != it.id
        ask = content_words(" ".join(m["content"] for m in it.messages))
        words = content_words(
            json.dumps([f["function"]["name"] + " " + f["function"]["description"] for f in it.functions])
        )
        theirs = content_words(
            " ".join(f["function"]["name"] + " " + f["function"]["description"] for f in other.functions)
        )
        assert not theirs & (ask | words)
    with pytest.raises(ValueError, match="evaluated and must never be fitted on"):
        bfcl_contexts(load_bfcl("irrelevance", limit=3))


def test_bfcl_eval_refuses_what_the_gate_saw_and_names_failure_stages():
    from steerlab.asa.bfcl import check_unseen, failure_kind
    from steerlab.config import UserError

    manifest = {"gate_fit_sources": ["asa:cal", "bfcl:parallel", "bfcl:simple_java", "run:cal"]}
    check_unseen(["irrelevance", "simple_python"], manifest)
    check_unseen(["parallel"], {})  # an asset fitted without BFCL
    with pytest.raises(UserError, match=r"fitted on BFCL \['parallel'\]"):
        check_unseen(["irrelevance", "parallel"], manifest)
    assert failure_kind("called 'a', expected 'b'") == "wrong function"
    assert failure_kind("missing required argument 'x'") == "missing argument"
    assert failure_kind("argument 'x' = 3 not among [4]") == "value"
    assert failure_kind("unexpected argument 'y'") == "extra argument"
    assert failure_kind("no call") == "no call parsed"


def test_tune_breaks_ties_by_the_gates_own_valid_f1():
    """No push opened a call on VALID (every F1 0): the point goes to the layer whose gate decides best (the
    prefill actions act on the gate alone), not to the first candidate layer; equal gates fall back to tau and
    strength as before."""
    from steerlab.asa.tuning import pick_best

    pool = [
        {"layer": 2, "f1": 0.0, "gate_f1": 0.61, "tau": 0.95, "strength": 0.25},
        {"layer": 13, "f1": 0.0, "gate_f1": 0.93, "tau": 0.9, "strength": 1.0},
        {"layer": 14, "f1": 0.0, "gate_f1": 0.80, "tau": 0.95, "strength": 0.25},
    ]
    assert pick_best(pool)["layer"] == 13
    pool[0]["f1"] = 0.1  # a push that works wins whatever its gate
    assert pick_best(pool)["layer"] == 2
    same = [{**pool[1], "tau": 0.9, "strength": 1.0}, {**pool[1], "tau": 0.95, "strength": 4.0}]
    assert pick_best(same)["tau"] == 0.95


def test_gate_data_captured_per_tool_list_equals_each_context_alone(tiny_models):
    """gate_sets captures the contexts grouped by their tool list (each group's system prompt once): the states
    equal each context read alone, with no shared prefix, in the rows' own order."""
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.gate_stage import context_examples, gate_sets, render_contexts
    from steerlab.asa.inputs import AsaInputs

    lm = tiny_models("llama")
    c = AsaConfig(model="tiny", limit_per_cell=2, gate_data=["varied"], batch_size=4)
    data = AsaInputs(c)
    rows = context_examples(c, data)
    assert len({tuple(t["function"]["name"] for t in e.tools) for e in rows}) > 1  # several groups
    layer = 2
    n = {s: len(data.examples[s]) for s in ("cal", "train", "valid")}
    fixed = {s: torch.zeros(n[s], lm.n_layers, lm.hidden_size) for s in n}
    fit, valid, got_rows = gate_sets(lm, c, data, fixed, layer)
    texts = render_contexts(lm, c, data, rows)
    alone = capture(lm, texts, layers=list(range(layer + 1)), chat=False, batch_size=1, shared_prefix=False)
    want = torch.stack([alone[(k, "block")] for k in range(layer + 1)], dim=1)
    from steerlab.asa.gate_stage import context_split

    split = [context_split(e, c.seed) for e in got_rows]
    for part, name, own in ((fit, "fit", ("cal", "train")), (valid, "valid", ("valid",))):
        idx = [i for i, x in enumerate(split) if x == name]
        k = sum(n[s] for s in own)
        torch.testing.assert_close(part.h[k:], want[idx], atol=1e-4, rtol=1e-4)


def test_gate_choice_is_stable_between_near_tied_candidates():
    """F1s within one VALID tool prompt's worth are a tie (the smallest C wins); a real F1 gap still decides, and
    a candidate over max_fpr is never chosen while one meets it."""
    from steerlab.asa.gate_stage import pick_gate

    def cand(c: float, f1: float, fpr: float, kind: str = "shared") -> dict:
        return {"kind": kind, "c": c, "f1": f1, "fpr": fpr}

    near = [cand(0.001, 0.7070, 0.03), cand(0.1, 0.7072, 0.03)]
    assert pick_gate(near, 0.05, 100)["c"] == 0.001
    assert pick_gate(near[::-1], 0.05, 100)["c"] == 0.001  # order does not matter
    apart = [cand(0.001, 0.69, 0.03), cand(0.1, 0.71, 0.03)]  # 0.02 > 1/100
    assert pick_gate(apart, 0.05, 100)["c"] == 0.1
    over = [cand(0.001, 0.70, 0.03), cand(0.1, 0.95, 0.08)]
    assert pick_gate(over, 0.05, 100)["c"] == 0.001
    # none meets max_fpr: the best F1 within SLACK of the lowest false-call rate
    none_ok = [cand(0.001, 0.60, 0.10), cand(0.01, 0.80, 0.11), cand(0.1, 0.90, 0.20)]
    assert pick_gate(none_ok, 0.05, 100)["c"] == 0.01
