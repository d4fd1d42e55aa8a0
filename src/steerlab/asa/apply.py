"""Steering a batch with an ASA controller, written once: the pipeline's TEST rows, the runtime (demo, chat,
server) and the BFCL evaluation all use ``GatedSteering``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models import LoadedModel
from ..steering import SteeringHandle, steer
from .controller import AsaController, AsaParams


class GatedSteering:
    """A row setup (``generate(..., row_setup=...)``): each batch gets its own controller at the last prompt token.

    ``labels`` (per prompt) feed the oracle gate; ``row_strength`` (per prompt) overrides the strength row by row,
    0 leaving a row unsteered. ``decisions()`` gives each prompt's routed domain, p(tool) and gate.
    """

    def __init__(
        self,
        lm: LoadedModel,
        params: AsaParams,
        *,
        strength: float,
        tau: float,
        beta: float,
        site: str = "block",
        mode: str = "full",
        labels: Sequence[int] | None = None,
        row_strength: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        self.lm, self.params, self.site = lm, params, site
        self.strength, self.tau, self.beta, self.mode, self.seed = strength, tau, beta, mode, seed
        self.labels = None if labels is None else torch.as_tensor(list(labels))
        self.row_strength = (
            None if row_strength is None else torch.as_tensor(list(row_strength), dtype=torch.float32)
        )
        self.batches: list[tuple[list[int], AsaController]] = []

    def controller(self, idx: list[int]) -> AsaController:
        return AsaController(
            self.params,
            self.strength,
            self.tau,
            self.beta,
            self.mode,
            oracle_labels=None if self.labels is None else self.labels[idx],
            seed=self.seed,
            row_strength=None if self.row_strength is None else self.row_strength[idx],
        )

    def __call__(self, idx: list[int]) -> SteeringHandle:
        ctrl = self.controller(idx)
        self.batches.append((list(idx), ctrl))
        return steer(
            self.lm, None, layer=self.params.layer, site=self.site, policy="prompt_last", controller=ctrl
        )

    def decisions(self, n: int) -> dict[str, torch.Tensor]:
        """Per prompt (in prompt order): ``domain`` index, ``p_tool`` and ``gate`` of the first forward that saw it."""
        out = {
            "domain": torch.full((n,), -1),
            "p_tool": torch.full((n,), float("nan")),
            "gate": torch.zeros(n),
        }
        for idx, ctrl in self.batches:
            if not ctrl.decisions:
                continue
            d = ctrl.decisions[0]
            out["domain"][idx] = d.domain.cpu()
            out["p_tool"][idx] = d.p_tool.cpu().float()
            out["gate"][idx] = d.gate.cpu().float()
        return out
