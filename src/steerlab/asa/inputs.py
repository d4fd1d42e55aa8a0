"""What every ASA stage reads: the examples, tools and prompts a config names (checked before any model loads),
the stored states and the fitted parameters per layer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import UserError, read_user_text
from ..generation import GenerateOptions
from ..runs import load_json, load_tensors
from ..stages import StageContext
from ..tools import call_stop
from .config import AsaConfig
from .controller import AsaParams
from .data import check_domains_have_tools, load_examples, load_tools
from .prompt import FEW_SHOT_SETS, PromptBuilder

DATA = ("data", "limit_per_cell", "data_fraction", "conversations", "tools")
PROMPT = ("call_format", "few_shot", "use_template_tools")
LAYER_CONVENTION = "layer k = output of decoder block k (0-based) = HF hidden_states[k+1]"


def few_shot_turns(spec: str) -> list[dict]:
    """A named few-shot set (``FEW_SHOT_SETS``) or a JSON file of turns."""
    if spec in FEW_SHOT_SETS:
        return list(FEW_SHOT_SETS[spec])
    path = Path(spec)
    if not path.is_file():
        raise UserError(
            f"few_shot {spec!r} is neither one of {', '.join(FEW_SHOT_SETS)} nor a JSON file of turns"
        )
    try:
        return json.loads(read_user_text(path, "a JSON file of few-shot turns"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None


class AsaInputs:
    """The examples, tools and prompts of a config (its data fields, read through a stage's view of them)."""

    def __init__(self, cfg: AsaConfig | object) -> None:
        self.examples = load_examples(cfg.data, cfg.limit_per_cell, cfg.conversations, cfg.fraction())
        self.tools, self.domain_tool = load_tools(cfg.tools)
        check_domains_have_tools(self.examples, self.domain_tool, cfg.tools)
        self.cfg = cfg

    def builder(self, few_shot: str | None = None) -> PromptBuilder:
        return PromptBuilder(
            self.tools,
            call_format=self.cfg.call_format,
            few_shot=few_shot_turns(self.cfg.few_shot if few_shot is None else few_shot),
            use_template_tools=self.cfg.use_template_tools,
        )

    def messages(self, split: str, few_shot: str | None = None) -> list[list[dict]]:
        pb = self.builder(few_shot)
        return [pb.messages(e.conversation) for e in self.examples[split]]

    def chat_tools(self) -> list[dict] | None:
        return self.tools if self.cfg.use_template_tools else None

    def call_options(self, progress: bool, desc: str) -> GenerateOptions:
        """How a row's reply is decoded where whole calls are scored: up to ``max_new_tokens_call`` tokens, the
        config's tools in the chat template when asked, stopped once the call is complete (or cannot come)."""
        c = self.cfg
        return GenerateOptions(
            max_new_tokens=c.max_new_tokens_call,
            batch_size=c.batch_size,
            batch_tokens=c.batch_tokens,
            tools=self.chat_tools(),
            stop=call_stop(c.call_format, c.trigger_mode),
            progress=progress,
            desc=desc,
        )

    def labels(self, split: str) -> np.ndarray:
        return np.array([e.label for e in self.examples[split]])

    def domains(self, split: str) -> list[str]:
        return [e.domain for e in self.examples[split]]

    def kinds(self, split: str) -> np.ndarray:
        """``single`` or ``conversation`` per example."""
        return np.array([e.kind for e in self.examples[split]])


def inputs(ctx: StageContext) -> AsaInputs:
    return AsaInputs(ctx.config)


def states(ctx: StageContext, split: str) -> torch.Tensor:
    """[N, n_layers, d] last-prompt-token states of a split (extract stage)."""
    return load_tensors(ctx.path("extract") / f"{split}.safetensors")["states"]


def layer_params(ctx: StageContext, layer: int, which: str = "params") -> AsaParams:
    """The fitted router, probes and directions at ``layer`` (``which="crossfit"``: the gate fitted on TRAIN only)."""
    t = load_tensors(ctx.path("fit") / f"{which}_L{layer}.safetensors")
    meta = load_json(ctx.path("fit") / "meta.json")
    norm = ctx.result("sweep")["mean_norm"][str(layer)]
    return AsaParams.from_tensors(t, layer, meta["domains"], norm)


def preflight(cfg: AsaConfig) -> None:
    """Everything that can be checked without the model: data, tools, few-shot turns, the prompt format, the
    constrained-decoding library, layer numbers against the model's config."""
    from ..models import check_layers

    data = AsaInputs(cfg)
    data.builder()
    for name in cfg.baselines:
        data.builder(name)
    if cfg.constrain != "none":
        from .calls import require

        require()
    if isinstance(cfg.extra_layers, list):
        check_layers(cfg.model, cfg.extra_layers, "extra_layers")
