"""Configuration of the tool-use transcoder study (``steerlab sae run``) and of the splice-cost check."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig, UserError, check_choice, check_layer_numbers, check_range, opt
from ..finetune import LORA_TARGETS
from .transcoder import ACTIVATIONS


@dataclass
class ToolUseConfig(ModelConfig):
    WHAT = "transcoder study config"
    ALIASES = {"top_latents": "search_pool"}
    # ``alphas`` is the old name of ASA's push sizes (strengths); here it meant the delta's scales
    RETIRED = {"alphas": "the scales of the delta latents are delta_scales (alphas means strengths, in ASA)"}

    out: str = opt("runs/sae/tooluse", "run directory (stages resume from it)")
    seed: int = opt(0, "data, training and bootstrap seed")
    layer: int = opt(15, "the MLP the transcoders replace (and where the delta latents are analysed)")
    splice_layers: list[int] | None = opt(
        None,
        "MLPs replaced by base (+ delta) transcoders, one trained per layer (null: just layer); with several, "
        "evaluate adds each layer's delta alone beside all of them together",
    )
    n_train: int = opt(2000, "calculator training conversations (tool + copy)")
    n_eval: int = opt(200, "held-out items per subset: tool, copy, ood")
    lora_rank: int = opt(16, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA scaling numerator (peft's lora_alpha)")
    lora_targets: str = opt("mlp", "which projections LoRA adapts: mlp, attn or all")
    lora_layers: list[int] | str | None = opt(
        [15], "layers LoRA adapts (all or null: every layer); defaults to the splice layer"
    )
    lora_examples: int = opt(640, "training examples for the finetune")
    lora_lr: float = opt(3e-3, "LoRA learning rate")
    lora_batch: int = opt(16, "LoRA batch size")
    n_general: int = opt(1000, "offline prompts (ASA, MCQ) mixed into the transcoders' training text")
    d_sae: int = opt(2304, "base transcoder latents")
    activation: str = opt("topk", "base transcoder activation: jumprelu, topk or relu")
    k: int = opt(64, "TopK latents per token")
    target_l0: float | None = opt(
        None,
        "base L0 to reach (jumprelu): the thresholds are moved after every training step towards it "
        "(null: only the gradient of reconstruction + sparsity moves them)",
    )
    init_l0: float | None = opt(
        None, "JumpReLU starting L0, thresholds from the pre-activation quantiles (null: target_l0, else 64)"
    )
    sparsity: float = opt(3e-4, "base sparsity coefficient (JumpReLU L0 / ReLU L1)")
    steps: int = opt(800, "base training steps")
    batch_size: int = opt(512, "tokens per training step")
    lr: float = opt(1e-3, "transcoder learning rate")
    buffer_tokens: int = opt(
        1 << 18,
        "training pairs held in memory per layer; a longer corpus is streamed from the model in chunks",
    )
    d_new: int = opt(64, "delta latents")
    delta_activation: str = opt("jumprelu", "delta activation")
    delta_target_l0: float | None = opt(
        8.0, "delta L0 to reach, held by its thresholds on the training batches (null: no target)"
    )
    delta_init_l0: float | None = opt(None, "delta starting L0 (null: delta_target_l0, else 4)")
    delta_sparsity: float = opt(1e-3, "delta sparsity coefficient")
    delta_steps: int = opt(800, "delta training steps")
    delta_scales: list[float] = opt(
        [0.0, 0.5, 1.0, 2.0], "multipliers of the delta in base + scale * delta (0: base)"
    )
    max_new_tokens: int = opt(32, "tokens generated per reply")
    gen_batch: int = opt(32, "generation batch (results do not depend on it)")
    search_pool: int = opt(
        16, "delta latents (best TRAIN tool-vs-copy AUC first) the search for the specific set picks from"
    )
    search_prompts: int = opt(64, "TRAIN tool prompts (and as many copy prompts) the set search scores")
    keep_margin: float = opt(
        0.1, "a set restores the behaviour when keeping only it calls within this of the full delta (TRAIN)"
    )
    ablate_max: float = opt(0.1, "a set removes the behaviour when ablating it leaves at most this call rate")

    def validate(self) -> None:
        check_choice("lora_targets", self.lora_targets, LORA_TARGETS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("delta_activation", self.delta_activation, ACTIVATIONS)
        for name in (
            "n_train",
            "n_eval",
            "lora_examples",
            "d_sae",
            "d_new",
            "steps",
            "delta_steps",
            "lora_rank",
            "lora_batch",
            "batch_size",
            "max_new_tokens",
            "gen_batch",
            "search_pool",
            "search_prompts",
            "k",
            "buffer_tokens",
        ):
            check_range(name, getattr(self, name), 1)
        check_range("layer", self.layer, 0)
        if isinstance(self.lora_layers, str):
            if self.lora_layers != "all":
                raise UserError(
                    f"lora_layers must be a list of layers, all or null, got {self.lora_layers!r}"
                )
            self.lora_layers = None
        for name in ("splice_layers", "lora_layers"):
            check_layer_numbers(name, getattr(self, name) or [])
        if self.splice_layers is not None:
            if not self.splice_layers or len(set(self.splice_layers)) != len(self.splice_layers):
                raise UserError(f"splice_layers must list distinct layers, got {self.splice_layers}")
            if self.layer not in self.splice_layers:
                raise UserError(
                    f"layer={self.layer} must be one of splice_layers={self.splice_layers} (it is analysed there)"
                )
        for name in ("keep_margin", "ablate_max"):
            check_range(name, getattr(self, name), 0.0, 1.0)
        for name, act in (("target_l0", self.activation), ("delta_target_l0", self.delta_activation)):
            val = getattr(self, name)
            if val is not None and act != "jumprelu":
                raise UserError(
                    f"{name}={val} needs jumprelu latents, not {act}"
                    + ("; topk fixes L0 at k" if act == "topk" else "")
                )
        for name, width in (
            ("target_l0", self.d_sae),
            ("init_l0", self.d_sae),
            ("delta_target_l0", self.d_new),
            ("delta_init_l0", self.d_new),
        ):
            val = getattr(self, name)
            if val is not None:
                check_range(name, val, 0.0, float(width), strict_lo=True, strict_hi=True)
        for name in ("lr", "lora_lr"):
            check_range(name, getattr(self, name), 0.0, strict_lo=True)
        for name in ("sparsity", "delta_sparsity"):
            check_range(name, getattr(self, name), 0.0)
        if self.activation == "topk" and self.k > self.d_sae:
            raise UserError(f"k={self.k} must be at most d_sae={self.d_sae}")
        if 0.0 not in self.delta_scales or 1.0 not in self.delta_scales:
            raise UserError(
                "delta_scales must include 0.0 (the base-only condition) and 1.0 (the delta as trained), "
                f"got {self.delta_scales}"
            )
        if self.search_pool > self.d_new:
            raise UserError(f"search_pool={self.search_pool} must be at most d_new={self.d_new}")

    def layers_used(self) -> list[int]:
        return list(dict.fromkeys([self.layer, *self.spliced(), *(self.lora_layers or [])]))  # each once

    def spliced(self) -> list[int]:
        """The layers whose MLP gets transcoders."""
        return list(self.splice_layers) if self.splice_layers else [self.layer]

    def base_init_l0(self) -> float:
        return self.init_l0 if self.init_l0 is not None else (self.target_l0 or 64.0)

    def delta_start_l0(self) -> float:
        return self.delta_init_l0 if self.delta_init_l0 is not None else (self.delta_target_l0 or 4.0)


# a small instance of the study (``--quick``): every stage runs, on few items, small transcoders and short searches;
# 28 new tokens: a calculator call is about 23 tokens, so fewer would cut every call short
QUICK = {
    "n_train": 64,
    "n_eval": 6,
    "lora_examples": 64,
    "lora_batch": 8,
    "lora_lr": 1e-2,
    "n_general": 20,
    "d_sae": 256,
    "k": 32,
    "steps": 50,
    "delta_steps": 50,
    "batch_size": 256,
    "d_new": 16,
    "delta_target_l0": 4.0,
    "delta_scales": [0.0, 1.0],
    "max_new_tokens": 28,
    "search_pool": 3,
    "search_prompts": 4,
}


@dataclass
class SpliceCostConfig(ModelConfig):
    WHAT = "splice-cost config"

    out: str = opt("runs/sae/splice_cost", "run directory (one stage per layer, resumable)")
    layers: list[int] = opt([3, 9, 15, 21, 27], "layers whose MLP is replaced, one at a time")
    d_sae: int = opt(2304, "transcoder latents")
    activation: str = opt("topk", "jumprelu, topk or relu")
    k: int = opt(64, "TopK latents per token")
    steps: int = opt(800, "training steps per layer")
    batch_size: int = opt(512, "tokens per training step")
    lr: float = opt(1e-3, "learning rate")
    sparsity: float = opt(3e-4, "sparsity coefficient (JumpReLU L0 / ReLU L1)")
    init_l0: float = opt(64.0, "JumpReLU starting L0")
    n_train: int = opt(600, "training conversations")
    n_eval: int = opt(200, "held-out conversations")
    seed: int = opt(0, "seed")

    def validate(self) -> None:
        check_choice("activation", self.activation, ACTIVATIONS)
        if not self.layers:
            raise UserError("layers must not be empty")
        check_layer_numbers("layers", self.layers)
        for name in ("d_sae", "k", "steps", "batch_size", "n_train", "n_eval"):
            check_range(name, getattr(self, name), 1)
        check_range("lr", self.lr, 0.0, strict_lo=True)


@dataclass
class SparsitySweepConfig(ModelConfig):
    WHAT = "sparsity-sweep config"

    out: str = opt("runs/sae/sparsity_sweep", "run directory (one stage per target, resumable)")
    layer: int = opt(15, "the MLP the transcoders replace")
    targets: list[float] = opt([8.0, 16.0, 32.0, 64.0, 128.0], "target L0 values, one transcoder each")
    d_sae: int = opt(2304, "JumpReLU transcoder latents")
    steps: int = opt(800, "training steps per target")
    batch_size: int = opt(512, "tokens per training step")
    lr: float = opt(1e-3, "learning rate")
    sparsity: float = opt(
        3e-4, "per-latent L0 penalty coefficient (the target itself is held by the thresholds)"
    )
    n_train: int = opt(600, "training conversations (as in splice-cost)")
    n_eval: int = opt(200, "held-out conversations")
    seed: int = opt(0, "seed")

    def validate(self) -> None:
        if not self.targets:
            raise UserError("targets must not be empty")
        for t in self.targets:
            if not 0 < t < self.d_sae:
                raise UserError(f"every target must be in (0, d_sae={self.d_sae}), got {t}")
        if len(set(self.targets)) != len(self.targets):
            raise UserError(f"targets must be distinct, got {self.targets}")
        for name in ("d_sae", "steps", "batch_size", "n_train", "n_eval"):
            check_range(name, getattr(self, name), 1)
        check_range("layer", self.layer, 0)
        check_range("lr", self.lr, 0.0, strict_lo=True)
        check_range("sparsity", self.sparsity, 0.0)
