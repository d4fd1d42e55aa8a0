"""Use an exported ASA asset: load it (no code runs), check it fits the model, steer generation with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..generation import Generation, generate_conditions
from ..models import LoadedModel
from ..tools import call_stop, is_triggered
from .apply import GatedAction
from .controller import AsaParams
from .prompt import PromptBuilder


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
    """An ASA asset bound to a loaded model: its prompt, its gate and steering, ready for generation."""

    def __init__(self, lm: LoadedModel, asset: str | Path, tools: list[dict] | None = None) -> None:
        from ..assets import AssetError, check_asset_compat, load_asset

        tensors, manifest = load_asset(asset)
        if manifest.get("kind") != "asa":
            raise AssetError(f"{asset} is a {manifest.get('kind')!r} asset, not an ASA asset")
        check_asset_compat(
            manifest, hidden_size=lm.hidden_size, n_layers=lm.n_layers, model_fingerprint=lm.fingerprint
        )
        self.lm, self.manifest = lm, manifest
        self.params = AsaParams.from_tensors(
            tensors, manifest["layer"], manifest["domains"], manifest["mean_norm"]
        )
        prompt = manifest["prompt"]
        self.builder = PromptBuilder(
            tools if tools is not None else manifest["tools"],
            call_format=prompt["call_format"],
            few_shot=prompt["few_shot"],
            use_template_tools=prompt["use_template_tools"],
        )
        self.fmt = manifest["tool_call_format"]
        self.mode = manifest.get("trigger_mode", "prefix")

    @property
    def strength(self) -> float:
        return float(self.manifest["strength"])

    @property
    def tau(self) -> float:
        return float(self.manifest["tau"])

    def steering(
        self,
        mode: str = "full",
        strength: float | None = None,
        tau: float | None = None,
        row_strength: list[float] | None = None,
        action: str | None = None,
        constrain: str | None = None,
        tools: list[dict] | object | None = None,
    ) -> GatedAction:
        """A row setup acting on each batch with this asset: its gate, direction and action (optionally another
        strength, tau, action or call constraint; ``tools`` a list or a per-row function for the constrained call)."""
        m = self.manifest
        return GatedAction(
            self.lm,
            self.params,
            strength=self.strength if strength is None else strength,
            tau=self.tau if tau is None else tau,
            beta=float(m["beta"]),
            site=m["site"],
            action=action or m.get("action", "steer"),
            on_close=m.get("on_close", "push"),
            constrain=constrain or m.get("constrain", "none"),
            direction=m.get("direction", "asa"),
            call_format=self.fmt,
            tools=self.builder.tools if tools is None else tools,
            domain_tools=m.get("domain_tools"),
            string_pattern=m.get("string_pattern"),
            mode=mode,
            row_strength=row_strength,
        )

    def run(
        self, prompts: list[str], max_new_tokens: int = 64, progress: bool = False, full_answers: bool = True
    ) -> list[AsaResult]:
        """Baseline and ASA outputs side by side; ``full_answers=False`` stops a row once it cannot call a tool."""
        asa = self.steering()
        msgs = [self.builder.messages(p) for p in prompts]
        tools = self.builder.tools if self.builder.use_template_tools else None
        gens = generate_conditions(
            self.lm,
            msgs,
            {"baseline": None, "asa": asa},
            max_new_tokens=max_new_tokens,
            tools=tools,
            stop=call_stop(self.fmt, self.mode if not full_answers else "anywhere"),
            progress=progress,
            batch_size=max(1, len(prompts)),
        )
        dec = asa.decisions(len(prompts))
        out = []
        for i, p in enumerate(prompts):
            b, s = gens["baseline"][i], gens["asa"][i]
            out.append(
                AsaResult(
                    p,
                    self.params.domains[int(dec["domain"][i])],
                    float(dec["p_tool"][i]),
                    int(dec["gate"][i]),
                    b,
                    s,
                    is_triggered(b.text, self.fmt, self.mode),
                    is_triggered(s.text, self.fmt, self.mode),
                )
            )
        return out
