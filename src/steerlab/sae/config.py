"""Configuration of the tool-use transcoder study (``steerlab sae run``) and of the splice-cost check."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, UserError, check_choice, check_range, opt
from .finetune import LORA_TARGETS
from .transcoder import ACTIVATIONS


@dataclass
class ToolUseConfig(Config):
    WHAT = "transcoder study config"
    ALIASES = {"alphas": "delta_scales"}

    model: str = opt("smollm2-135m", "alias (smollm2-135m), .gguf file, local model dir or hub id")
    device: str = opt("auto", "auto | cpu | cuda | mps")
    dtype: str = opt("auto", "auto | float32 | bfloat16 | float16")
    out: str = opt("runs/sae/tooluse", "run directory (stages resume from it)")
    seed: int = opt(0, "data, training and bootstrap seed")
    layer: int = opt(15, "the MLP the transcoders replace")
    n_train: int = opt(2000, "calculator training conversations (tool + copy)")
    n_eval: int = opt(200, "held-out items per subset: tool, copy, ood")
    lora_rank: int = opt(16, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA scaling numerator (peft's lora_alpha)")
    lora_targets: str = opt("mlp", "which projections LoRA adapts: mlp, attn or all")
    lora_layers: list[int] | None = opt([15], "layers LoRA adapts (null = all); defaults to the splice layer")
    lora_examples: int = opt(640, "training examples for the finetune")
    lora_lr: float = opt(3e-3, "LoRA learning rate")
    lora_batch: int = opt(16, "LoRA batch size")
    n_general: int = opt(1000, "offline prompts (ASA, MCQ) mixed into the transcoders' training text")
    d_sae: int = opt(2304, "base transcoder latents")
    activation: str = opt("topk", "base transcoder activation: jumprelu, topk or relu")
    k: int = opt(64, "TopK latents per token")
    init_l0: float = opt(64.0, "JumpReLU starting L0 (thresholds from the pre-activation quantiles)")
    sparsity: float = opt(3e-4, "base sparsity coefficient (JumpReLU L0 / ReLU L1)")
    steps: int = opt(800, "base training steps")
    batch_size: int = opt(512, "tokens per training step")
    lr: float = opt(1e-3, "transcoder learning rate")
    d_new: int = opt(64, "delta latents")
    delta_activation: str = opt("jumprelu", "delta activation")
    delta_init_l0: float = opt(4.0, "delta starting L0")
    delta_sparsity: float = opt(1e-3, "delta sparsity coefficient")
    delta_steps: int = opt(800, "delta training steps")
    delta_scales: list[float] = opt(
        [0.0, 0.5, 1.0, 2.0], "multipliers of the delta in base + scale * delta (0: base)"
    )
    max_new_tokens: int = opt(32, "tokens generated per reply")
    gen_batch: int = opt(32, "generation batch (results do not depend on it)")
    top_latents: int = opt(8, "delta latents ranked and ablated at the decision token")

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
            "top_latents",
            "k",
        ):
            check_range(name, getattr(self, name), 1)
        check_range("layer", self.layer, 0)
        for name in ("lr", "lora_lr"):
            check_range(name, getattr(self, name), 0.0, strict_lo=True)
        for name in ("sparsity", "delta_sparsity"):
            check_range(name, getattr(self, name), 0.0)
        if self.activation == "topk" and self.k > self.d_sae:
            raise UserError(f"k={self.k} must be at most d_sae={self.d_sae}")
        if 0.0 not in self.delta_scales:
            raise UserError(
                f"delta_scales must include 0.0 (the base-only condition), got {self.delta_scales}"
            )
        if self.top_latents > self.d_new:
            raise UserError(f"top_latents={self.top_latents} must be at most d_new={self.d_new}")

    def layers_used(self) -> list[int]:
        return [self.layer, *(self.lora_layers or [])]


QUICK = {
    "n_train": 200,
    "n_eval": 24,
    "lora_examples": 160,
    "n_general": 100,
    "d_sae": 512,
    "steps": 100,
    "delta_steps": 100,
    "delta_scales": [0.0, 1.0],
    "max_new_tokens": 24,
    "top_latents": 2,
}


@dataclass
class SpliceCostConfig(Config):
    WHAT = "splice-cost config"

    model: str = opt("smollm2-135m", "alias (smollm2-135m), .gguf file, local model dir or hub id")
    device: str = opt("auto", "auto | cpu | cuda | mps")
    dtype: str = opt("auto", "auto | float32 | bfloat16 | float16")
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
        for name in ("d_sae", "k", "steps", "batch_size", "n_train", "n_eval"):
            check_range(name, getattr(self, name), 1)
        check_range("lr", self.lr, 0.0, strict_lo=True)
