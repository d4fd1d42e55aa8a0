"""Use an exported ASA asset: load it (no code runs), check it fits the model, steer generation with it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..generation import Generation, generate_conditions
from ..models import LoadedModel
from ..tools import call_stop, is_triggered
from .apply import GatedAction
from .controller import AsaParams
from .point import OperatingPoint
from .prompt import PromptBuilder


@dataclass
class AsaResult:
    prompt: str | list[dict]
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
        self.point = OperatingPoint.from_manifest(manifest)
        self.fmt = self.point.call_format

    @property
    def trigger_mode(self) -> str:
        """What counts as a call: ``prefix`` (the reply starts with the marker) or ``anywhere``."""
        return self.point.trigger_mode

    @property
    def mode(self) -> str:
        """Deprecated: the old name of ``trigger_mode`` (``steering(ablation=)`` is the ablation)."""
        warnings.warn(
            "AsaSteerer.mode is deprecated: use AsaSteerer.trigger_mode", DeprecationWarning, stacklevel=2
        )
        return self.trigger_mode

    @property
    def strength(self) -> float:
        return self.point.strength

    @property
    def tau(self) -> float:
        return self.point.tau

    def steering(
        self,
        *,
        strength: float | None = None,
        tau: float | None = None,
        action: str | None = None,
        constrain: str | None = None,
        tools: list[dict] | Callable[[int], list[dict]] | None = None,
        ablation: str = "full",
        rows: Sequence[OperatingPoint | None] | None = None,
        offered: Callable[[int], set[str] | None] | None = None,
        forced: Callable[[int], str | None] | None = None,
        mode: str | None = None,
    ) -> GatedAction:
        """The asset's operating point acting on batches (``OperatingPoint.bind``), with optional changes: another
        strength, tau, action or call constraint; ``tools`` a list or a per-prompt function for the constrained
        call; ``rows``, ``offered``, ``forced`` per prompt (see ``OperatingPoint.bind``). ``mode`` is the
        deprecated old name of ``ablation``."""
        if mode is not None:
            warnings.warn(
                "steering(mode=) is deprecated: use steering(ablation=) (the trigger mode is trigger_mode)",
                DeprecationWarning,
                stacklevel=2,
            )
            ablation = mode
        point = self.point.replace(strength=strength, tau=tau, action=action, constrain=constrain)
        return point.bind(
            self.lm,
            self.params,
            self.builder.tools if tools is None else tools,
            ablation=ablation,
            rows=rows,
            offered=offered,
            forced=forced,
        )

    def run(
        self,
        prompts: Sequence[str | list[dict]],
        max_new_tokens: int = 64,
        progress: bool = False,
        full_answers: bool = True,
    ) -> list[AsaResult]:
        """Baseline and ASA outputs side by side for user prompts or conversations (OpenAI messages);
        ``full_answers=False`` stops a row once it cannot call a tool (as the evaluate stage does)."""
        asa = self.steering()
        msgs = [self.builder.messages(p) for p in prompts]
        tools = self.builder.tools if self.builder.use_template_tools else None
        gens = generate_conditions(
            self.lm,
            msgs,
            {"baseline": None, "asa": asa},
            max_new_tokens=max_new_tokens,
            tools=tools,
            stop=call_stop(self.fmt, self.trigger_mode if not full_answers else "anywhere"),
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
                    is_triggered(b.text, self.fmt, self.trigger_mode),
                    is_triggered(s.text, self.fmt, self.trigger_mode),
                )
            )
        return out
