"""Configuration of the tool-use transcoder study (``steerlab sae run``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .finetune import LORA_TARGETS
from .transcoder import ACTIVATIONS


@dataclass
class ToolUseConfig:
    model: str = "smollm2-135m"
    device: str = "auto"
    seed: int = 0
    layer: int = 15
    # calculator data
    n_train: int = 2000
    n_eval: int = 200  # per held-out subset: tool, copy, ood
    # LoRA finetune: by default only the MLP of ``layer``, so the whole finetune lives where the transcoder splices
    lora_rank: int = 16
    lora_targets: str = "mlp"
    lora_layers: list[int] | None = field(default_factory=lambda: [15])
    lora_examples: int = 640
    lora_lr: float = 3e-3
    lora_batch: int = 16
    # base transcoder, trained on the base model's activations
    n_general: int = 1000  # offline prompts (ASA, MCQ) mixed with the calculator training conversations
    d_sae: int = 2304
    activation: str = "topk"
    k: int = 64
    init_l0: float = 64.0
    sparsity: float = 3e-4
    steps: int = 800
    batch_size: int = 512
    lr: float = 1e-3
    # delta latents
    d_new: int = 64
    delta_activation: str = "jumprelu"
    delta_init_l0: float = 4.0
    delta_sparsity: float = 1e-3
    delta_steps: int = 800
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])
    # evaluation
    max_new_tokens: int = 32
    gen_batch: int = 32
    top_latents: int = 8

    def __post_init__(self) -> None:
        if self.lora_targets not in LORA_TARGETS:
            raise ValueError(f"lora_targets={self.lora_targets!r}; valid: {', '.join(LORA_TARGETS)}")
        for name in ("activation", "delta_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(f"{name}={getattr(self, name)!r}; valid: {', '.join(ACTIVATIONS)}")
        for name in (
            "n_train",
            "n_eval",
            "lora_examples",
            "d_sae",
            "d_new",
            "steps",
            "delta_steps",
            "lora_rank",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if 0.0 not in self.alphas:
            raise ValueError(f"alphas must include 0.0 (the base-only condition), got {self.alphas}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ToolUseConfig:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown config keys {bad}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def subset(self, *names: str) -> dict:
        d = self.to_dict()
        return {n: d[n] for n in names}
