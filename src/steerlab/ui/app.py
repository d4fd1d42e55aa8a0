"""The Gradio web app: baseline vs steered replies side by side, and a tab to build and try a steering vector.

Gradio because the users are ML researchers who know it, it installs from PyPI beside torch and transformers
without pulling another torch (about 100 MB with pandas and pillow), it runs fully offline once its web fonts are
replaced by system fonts and analytics are off, and its page is plain HTML that headless Chromium can drive.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from ..serve.engine import Engine  # noqa: E402
from .lab import lab_auc, lab_compare, lab_states, lab_vector  # noqa: E402
from .logic import LabData, compare, lines, parse_tools_text  # noqa: E402

EXAMPLE = "What is 48,213 divided by 37?"
NO_ASSET_SLIDERS = (
    "Strength and τ (gate threshold) steer through an ASA asset's gate; none is loaded "
    "(`steerlab ui --asset DIR`). To steer without one, build a vector in **Build a steering vector**."
)
CSS = ".reply textarea {font-family: ui-monospace, monospace; font-size: 13px}"


def theme() -> gr.themes.Base:
    """The default look with system fonts: the stock theme fetches web fonts, which fails offline."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )


def _example_lists(per_domain: int = 2) -> tuple[str, str]:
    """Tool and non-tool prompts, the same number from each domain in both lists: lists that differ in topic as
    well would give a vector (and probe AUCs) partly about the topic."""
    from ..data.asa_data import load_asa_split

    ex = load_asa_split("train")
    lists = []
    for label in (1, 0):
        lists.append(
            [
                e.prompt
                for d in sorted({e.domain for e in ex})
                for e in [x for x in ex if x.domain == d and x.label == label][:per_domain]
            ]
        )
    return "\n".join(lists[0]), "\n".join(lists[1])


def build_ui(engine: Engine) -> gr.Blocks:
    """The app for one loaded engine (model + optional ASA asset)."""
    info = engine.describe()
    asset = info["asset"]
    n_layers = engine.lm.n_layers

    def run_compare(prompt: str, tools_text: str, strength: float, tau: float, max_tokens: float):  # noqa: ANN202
        try:
            tools = parse_tools_text(tools_text)
            b, s = compare(
                engine, prompt, tools, strength if asset else None, tau if asset else None, int(max_tokens)
            )
        except ValueError as err:
            raise gr.Error(str(err)) from None
        g = s.gate
        if g.gate is not None:
            head = (
                f"### Gate: {g.gate:+d} · p(tool) = {g.p_tool:.3f} · domain: {g.domain}\n"
                f"strength = {g.strength:g} × mean hidden norm, τ = {g.tau:g}, layer {g.layer}"
            )
        else:
            head = f"### Gate not consulted\n{g.note}"
        return head, b.text, b.summary(), s.text, s.summary()

    with gr.Blocks(title="steerlab") as demo:
        gr.Markdown(
            f"# steerlab · {info['model']}\n"
            + (
                f"ASA asset **{asset['name']}** (layer {asset['layer']}, domains {', '.join(asset['domains'])})"
                if asset
                else "No ASA asset loaded (start with `steerlab ui --asset DIR`): both sides are unsteered."
            )
        )
        with gr.Tab("Baseline vs ASA"):
            with gr.Row():
                prompt = gr.Textbox(EXAMPLE, label="Prompt", lines=2, elem_id="prompt", scale=4)
                run = gr.Button("Run", variant="primary", elem_id="run", scale=1)
            with gr.Row():
                # strength and τ act on an asset's gate: without one they are hidden, and the page says where
                # to steer
                strength = gr.Slider(
                    -3,
                    3,
                    value=asset["strength"] if asset else 1.0,
                    step=0.05,
                    label="strength (× mean hidden norm)",
                    visible=bool(asset),
                    elem_id="strength",
                )
                tau = gr.Slider(
                    0.51,
                    0.99,
                    value=asset["tau"] if asset else 0.6,
                    step=0.01,
                    label="τ (gate)",
                    visible=bool(asset),
                    elem_id="tau",
                )
                gr.Markdown(
                    NO_ASSET_SLIDERS,
                    visible=not asset,
                    elem_id="no-asset-note",
                )
                max_tokens = gr.Slider(8, 256, value=64, step=8, label="max tokens")
            with gr.Accordion("Tools offered to the model (OpenAI JSON)", open=False):
                tools_box = gr.Code(
                    json.dumps(engine.default_tools(), indent=1), language="json", label="tools"
                )
            gate = gr.Markdown("", elem_id="gate")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Baseline (no steering)")
                    b_text = gr.Textbox(
                        label="reply", lines=6, elem_id="baseline-reply", elem_classes="reply"
                    )
                    b_info = gr.Markdown(elem_id="baseline-info")
                with gr.Column():
                    gr.Markdown("### Steered (ASA)")
                    s_text = gr.Textbox(label="reply", lines=6, elem_id="steered-reply", elem_classes="reply")
                    s_info = gr.Markdown(elem_id="steered-info")
            outs = [gate, b_text, b_info, s_text, s_info]
            run.click(run_compare, [prompt, tools_box, strength, tau, max_tokens], outs)
            prompt.submit(run_compare, [prompt, tools_box, strength, tau, max_tokens], outs)

        with gr.Tab("Build a steering vector"):
            pos_default, neg_default = _example_lists()
            gr.Markdown(
                "Two lists of chat prompts (one per line). The vector is mean(A) − mean(B) of the last "
                "prompt token's state; the probe AUC per layer is cross-validated (each prompt scored by a "
                "probe fitted without it)."
            )
            with gr.Row():
                pos = gr.Textbox(
                    pos_default, label="A: prompts with the behaviour", lines=8, elem_id="lab-pos"
                )
                neg = gr.Textbox(neg_default, label="B: prompts without it", lines=8, elem_id="lab-neg")
            probe = gr.Button("Probe every layer", elem_id="lab-probe")
            plot = gr.LinePlot(
                x="layer", y="AUC", y_lim=[0.0, 1.0], label="probe AUC per layer", elem_id="lab-plot"
            )
            auc_text = gr.Markdown(elem_id="lab-auc")
            with gr.Row():
                layer = gr.Slider(
                    0, n_layers - 1, value=n_layers // 2, step=1, label="layer", elem_id="lab-layer"
                )
                strength = gr.Slider(-3, 3, value=1.0, step=0.05, label="strength (× mean hidden norm)")
                policy = gr.Radio(["all", "prompt_last", "generated"], value="all", label="positions")
            test_prompt = gr.Textbox("What is 12 times 7?", label="Try on", elem_id="lab-prompt")
            try_btn = gr.Button("Try the vector", variant="primary", elem_id="lab-try")
            with gr.Row():
                lb = gr.Textbox(label="baseline", lines=5, elem_id="lab-baseline")
                ls = gr.Textbox(label="steered", lines=5, elem_id="lab-steered")
            data = gr.State(None)

            def probe_layers(a: str, b: str):  # noqa: ANN202
                pa, pb = lines(a), lines(b)
                try:
                    states = lab_states(engine, pa, pb)
                except ValueError as err:
                    raise gr.Error(str(err)) from None
                lab = LabData(states, len(pa))
                rows: list[dict] = []
                for k in range(n_layers):  # one probe per layer; the plot grows as they finish
                    rows.append({"layer": k, "AUC": lab_auc(states, lab.n_pos, k)})
                    yield pd.DataFrame(rows), f"layer {k}: AUC {rows[-1]['AUC']:.3f}", lab
                best = max(rows, key=lambda r: r["AUC"])
                yield pd.DataFrame(rows), f"best held-out AUC {best['AUC']:.3f} at layer {best['layer']}", lab

            def try_vector(a: str, b: str, lab: LabData | None, k: float, s: float, pol: str, p: str):  # noqa: ANN202
                try:
                    if (
                        lab is None
                        or lab.n_pos != len(lines(a))
                        or lab.states.shape[0] != len(lines(a)) + len(lines(b))
                    ):
                        lab = LabData(lab_states(engine, lines(a), lines(b)), len(lines(a)))
                    vec, norm = lab_vector(engine, lab.states, lab.n_pos, int(k))
                    base, steered = lab_compare(engine, p, vec, int(k), s * norm, policy=pol)
                except ValueError as err:
                    raise gr.Error(str(err)) from None
                return base, steered, lab

            probe.click(probe_layers, [pos, neg], [plot, auc_text, data])
            try_btn.click(try_vector, [pos, neg, data, layer, strength, policy, test_prompt], [lb, ls, data])
    return demo


def launch(
    engine: Engine, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False, block: bool = True
) -> tuple[gr.Blocks, str]:
    """Start the app; returns the Blocks and its local URL (``block=False`` returns at once)."""
    demo = build_ui(engine)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        inbrowser=open_browser,
        prevent_thread_lock=True,
        quiet=True,
        theme=theme(),
        css=CSS,
        footer_links=[],
    )
    if block:
        demo.block_thread()
    return demo, url
