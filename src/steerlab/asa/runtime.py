"""Use an exported ASA asset: load it (no code runs), check it fits the model, steer generation with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..generation import Generation, generate_conditions
from ..models import LoadedModel
from ..steering import steer
from .controller import AsaController, AsaParams
from .prompt import PromptBuilder
from .triggers import call_stop, is_triggered


@dataclass
class AsaResult:
    prompt: str
    domain: str
    p_tool: float
    gate: int
    baseline: Generation
    steered: Generation
    baseline_triggered: bool
    steered_triggered: bool


class AsaSteerer:
    """An ASA asset bound to a loaded model."""

    def __init__(self, lm: LoadedModel, asset: str | Path, tools: list[dict] | None = None) -> None:
        from ..assets import check_asset_compat, load_asset

        tensors, manifest = load_asset(asset)
        if manifest.get("kind") != "asa":
            raise ValueError(f"{asset} is a {manifest.get('kind')!r} asset, not an ASA asset")
        check_asset_compat(
            manifest, hidden_size=lm.hidden_size, n_layers=lm.n_layers, model_fingerprint=lm.fingerprint
        )
        self.lm, self.manifest = lm, manifest
        self.params = AsaParams.from_tensors(
            tensors, manifest["layer"], manifest["domains"], manifest["mean_norm"]
        )
        prompt = manifest["prompt"]
        if tools is None:
            from ..data.asa_data import load_asa_tools

            tools = load_asa_tools()
        self.builder = PromptBuilder(
            tools,
            call_format=prompt["call_format"],
            few_shot=prompt["few_shot"],
            use_template_tools=prompt["use_template_tools"],
        )
        self.fmt = manifest["tool_call_format"]
        self.mode = manifest.get("trigger_mode", "prefix")

    def controller(self, mode: str = "full") -> AsaController:
        m = self.manifest
        return AsaController(self.params, m["alpha"], m["tau"], m["beta"], mode)

    def run(
        self, prompts: list[str], max_new_tokens: int = 64, progress: bool = False, full_answers: bool = True
    ) -> list[AsaResult]:
        """Baseline and ASA outputs side by side; ``full_answers=False`` stops a row once it cannot call a tool."""
        ctrls: list[tuple[list[int], AsaController]] = []

        def setup(idx: list[int]):  # noqa: ANN202
            ctrl = self.controller()
            ctrls.append((idx, ctrl))
            return steer(
                self.lm,
                None,
                layer=self.params.layer,
                site=self.manifest["site"],
                policy="prompt_last",
                controller=ctrl,
            )

        msgs = [self.builder.messages(p) for p in prompts]
        tools = self.builder.tools if self.builder.use_template_tools else None
        gens = generate_conditions(
            self.lm,
            msgs,
            {"baseline": None, "asa": setup},
            max_new_tokens=max_new_tokens,
            tools=tools,
            stop=call_stop(self.fmt, self.mode if not full_answers else "anywhere"),
            progress=progress,
            batch_size=len(prompts),
        )
        decided: dict[int, tuple[int, float, int]] = {}
        for idx, ctrl in ctrls:  # batches run in length order: map each decision back to its prompt
            d = ctrl.decisions[0]
            for j, i in enumerate(idx):
                decided[i] = (int(d.domain[j]), float(d.p_tool[j]), int(d.gate[j]))
        out = []
        for i, p in enumerate(prompts):
            b, s = gens["baseline"][i], gens["asa"][i]
            dom, prob, gate = decided[i]
            out.append(
                AsaResult(
                    p,
                    self.params.domains[dom],
                    prob,
                    gate,
                    b,
                    s,
                    is_triggered(b.text, self.fmt, self.mode),
                    is_triggered(s.text, self.fmt, self.mode),
                )
            )
        return out
