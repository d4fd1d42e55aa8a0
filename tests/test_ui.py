"""steerlab ui: the logic behind the page on a tiny model, and the page itself in headless Chromium (Selenium).

The browser test types a prompt, presses Run, and reads both replies and the gate from the page; the expected
values are computed by calling the engine directly, not written down.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

pytest.importorskip("gradio")
from serve_helpers import tiny_asset  # noqa: E402
from steerlab.serve.engine import Engine  # noqa: E402
from steerlab.ui.lab import lab_auc, lab_compare, lab_states, lab_vector  # noqa: E402
from steerlab.ui.logic import compare, lines  # noqa: E402

PROMPT = "What is 3+4?"
CHROMIUM = os.environ.get("STEERLAB_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("STEERLAB_CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def engine(tiny_models, tmp_path_factory):
    lm = tiny_models("llama")
    return Engine(lm, tiny_asset(tmp_path_factory.mktemp("ui-asa"), lm))


def test_compare_runs_baseline_unsteered_and_steered_with_the_sliders(engine):
    tools = Engine.default_tools()
    b, s = compare(engine, PROMPT, tools, strength=3.0, tau=0.6, max_tokens=12)
    assert b.gate.applied is False and s.gate.applied is True
    # one prompt in two rows of a batch: equal up to the float order of a batched matmul
    assert b.gate.p_tool == pytest.approx(s.gate.p_tool, abs=1e-5) and b.gate.gate == s.gate.gate != 0
    assert s.gate.strength == 3.0 and s.gate.tau == 0.6
    assert b.text != s.text  # a gated prompt at strength 3 changes the reply
    plain = Engine(engine.lm)  # the same prompt without an asset gives the baseline reply
    b2, s2 = compare(plain, PROMPT, tools, strength=None, tau=None, max_tokens=12)
    assert b2.text == s2.text == b.text
    with pytest.raises(ValueError, match="type a prompt"):
        compare(engine, "  ", tools, 1.0, 0.6, 8)


def test_lab_vector_auc_and_try(engine):
    pos = ["Compute 12*7 please", "What is 45+17?", "Divide 81 by 9", "Square root of 144?"]
    neg = ["Tell me a story", "Why is the sky blue?", "Write a haiku", "Who was Ada Lovelace?"]
    states = lab_states(engine, pos, neg)
    assert states.shape == (8, engine.lm.n_layers, engine.lm.hidden_size)
    for k in range(engine.lm.n_layers):
        assert 0.0 <= lab_auc(states, 4, k) <= 1.0
    vec, norm = lab_vector(engine, states, 4, 2)
    assert vec.norm().item() == pytest.approx(1.0, abs=1e-5) and norm > 0
    want = states[:4, 2].mean(0) - states[4:, 2].mean(0)
    assert torch.nn.functional.cosine_similarity(vec, want, dim=0).item() == pytest.approx(1.0, abs=1e-5)
    base, steered = lab_compare(engine, "Hi there", vec, 2, 0.0)
    assert base == steered  # strength 0 changes nothing
    base, steered = lab_compare(engine, "Hi there", vec, 2, 20 * norm)
    assert base != steered
    with pytest.raises(ValueError, match="at least 2 prompts"):
        lab_states(engine, ["one"], neg)
    assert lines(" a \n\n b\n") == ["a", "b"]


def _browser_ready() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        return f"no Chromium/chromedriver at {CHROMIUM} / {DRIVER} (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'steerlab[serve-test]')"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    why = _browser_ready()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def page(engine):
    from steerlab.serve.background import free_socket
    from steerlab.ui.app import launch

    s = free_socket()
    port = s.getsockname()[1]
    s.close()
    demo, url = launch(engine, port=port, block=False)
    yield url
    demo.close()


def _value(d, css: str) -> str:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    return d.find_element(By.CSS_SELECTOR, css).get_attribute("value")


def test_browser_types_a_prompt_and_reads_both_replies_and_the_gate(browser, page, engine):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    d.get(page)
    WebDriverWait(d, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt textarea"))
    box = d.find_element(By.CSS_SELECTOR, "#prompt textarea")
    box.clear()
    box.send_keys(PROMPT)
    d.find_element(By.CSS_SELECTOR, "#run").click()
    WebDriverWait(d, 120).until(lambda d: _value(d, "#steered-reply textarea"))
    m = engine.steerer.manifest
    b, s = compare(engine, PROMPT, Engine.default_tools(), m["strength"], m["tau"], 64)
    assert _value(d, "#baseline-reply textarea") == b.text
    assert _value(d, "#steered-reply textarea") == s.text
    gate = d.find_element(By.CSS_SELECTOR, "#gate").text
    assert (
        f"Gate: {s.gate.gate:+d}" in gate
        and f"p(tool) = {s.gate.p_tool:.3f}" in gate
        and s.gate.domain in gate
    )
    assert "steering applied: yes" in d.find_element(By.CSS_SELECTOR, "#steered-info").text
    assert "steering applied: no" in d.find_element(By.CSS_SELECTOR, "#baseline-info").text


def test_browser_lab_tab_plots_auc_per_layer(browser, page, engine):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    d.get(page)
    tab = "//button[@role='tab' and contains(., 'Build a steering vector')]"
    WebDriverWait(d, 60).until(lambda d: [b for b in d.find_elements(By.XPATH, tab) if b.is_displayed()])
    next(b for b in d.find_elements(By.XPATH, tab) if b.is_displayed()).click()
    WebDriverWait(d, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "#lab-probe").is_displayed())
    pos, neg = lines(_value(d, "#lab-pos textarea")), lines(_value(d, "#lab-neg textarea"))
    d.find_element(By.CSS_SELECTOR, "#lab-probe").click()
    WebDriverWait(d, 120).until(
        lambda d: "best held-out AUC" in d.find_element(By.CSS_SELECTOR, "#lab-auc").text
    )
    states = lab_states(engine, pos, neg)
    aucs = [lab_auc(states, len(pos), k) for k in range(engine.lm.n_layers)]
    best = max(range(len(aucs)), key=lambda k: aucs[k])
    assert (
        d.find_element(By.CSS_SELECTOR, "#lab-auc").text
        == f"best held-out AUC {aucs[best]:.3f} at layer {best}"
    )
    assert d.find_elements(By.CSS_SELECTOR, "#lab-plot canvas, #lab-plot svg")  # the chart rendered


def _component(demo, elem_id: str):  # noqa: ANN001, ANN202
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_strength_and_tau_sliders_only_with_an_asset(engine):
    """Without an asset strength and τ would do nothing: they are hidden and the page says where steering is."""
    from steerlab.ui.app import NO_ASSET_SLIDERS, build_ui

    plain = build_ui(Engine(engine.lm))
    assert not _component(plain, "strength").visible and not _component(plain, "tau").visible
    note = _component(plain, "no-asset-note")
    assert note.visible and note.value == NO_ASSET_SLIDERS and "Build a steering vector" in note.value
    steered = build_ui(engine)
    assert _component(steered, "strength").visible and _component(steered, "tau").visible
    assert not _component(steered, "no-asset-note").visible


def test_default_lab_lists_pair_domains():
    from steerlab.data.asa_data import load_asa_split
    from steerlab.ui.app import _example_lists

    domain = {e.prompt: (e.domain, e.label) for e in load_asa_split("train")}
    a, b = (lines(x) for x in _example_lists())
    assert [domain[p][1] for p in a] == [1] * len(a) and [domain[p][1] for p in b] == [0] * len(b)
    assert [domain[p][0] for p in a] == [domain[p][0] for p in b] and len(set(domain[p][0] for p in a)) == 4


@pytest.mark.slow
def test_lab_auc_on_the_embedded_model_with_the_default_lists(smollm):
    """The page's default lists on the embedded model: the held-out AUC read 0.0 at layers 2-7 (one split of
    3 + 3 prompts); cross-validated, no layer is below chance by much and the late layers separate."""
    from steerlab.ui.app import _example_lists

    eng = Engine(smollm)
    a, b = (lines(x) for x in _example_lists())
    states = lab_states(eng, a, b)
    aucs = [lab_auc(states, len(a), k) for k in range(smollm.n_layers)]
    assert min(aucs) >= 0.4 and max(aucs) >= 0.9, aucs
