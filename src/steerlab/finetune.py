"""LoRA finetuning (peft) on (prompt -> completion) rows, shared by the methods: the SAE study teaches a model the
calculator tool-call format with it, ASA's ``lora`` stage trains the paper's LoRA baseline.

The loss is on the assistant's completion tokens only (prompt tokens are masked), so the model learns when to
call and how, not to reproduce prompts. The adapter is merged and the model saved as safetensors, so every later
step (capture, splices, generation) loads it like any other local model directory.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .base import atomic_dir
from .models import LoadedModel, render_prompts, tokenize_texts

LORA_TARGETS = {
    "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
}


def _require_peft() -> object:
    try:
        import peft
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "LoRA finetuning (steerlab sae finetune, the ASA lora stage) needs peft: pip install 'steerlab[finetune]' (or pip install peft)"
        ) from e
    return peft


def completion_ids(
    lm: LoadedModel, rows: Sequence[dict], tools: list[dict] | None = None
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids through the chat template's generation prompt, completion ids + end-of-turn) per row."""
    convs = [conversation(r) for r in rows]
    prompts = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, convs, chat=True, tools=tools))
    eos = lm.tokenizer.eos_token or ""
    out = []
    for p, r in zip(prompts, rows):
        c = lm.tokenizer(r["completion"] + eos, add_special_tokens=False)["input_ids"]
        out.append((p, list(c)))
    return out


def conversation(row: dict) -> list[dict]:
    """A row's conversation: its ``messages`` (system, few-shot turns, user), or its ``prompt`` as one user turn."""
    return row["messages"] if "messages" in row else [{"role": "user", "content": row["prompt"]}]


def lora_finetune(
    lm: LoadedModel,
    rows: Sequence[dict],
    *,
    rank: int = 16,
    lora_alpha: int = 32,
    targets: str = "all",
    layers: Sequence[int] | None = None,
    epochs: float = 1.0,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    tools: list[dict] | None = None,
) -> dict:
    """Train LoRA adapters on (prompt -> completion) rows, merge them into ``lm.model`` in place; returns the
    loss history. ``targets``: all, attn or mlp projections; ``layers``: only these layers (default all)."""
    peft = _require_peft()
    if targets not in LORA_TARGETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; valid: {', '.join(LORA_TARGETS)}")
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    torch.manual_seed(seed)
    cfg = peft.LoraConfig(
        r=rank,
        lora_alpha=lora_alpha,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS[targets],
        task_type="CAUSAL_LM",
        layers_to_transform=None if layers is None else [lm.arch.check_layer(i) or i for i in layers],
    )
    pm = peft.get_peft_model(lm.model, cfg)
    data = completion_ids(lm, rows, tools)
    steps = max(1, int(round(epochs * len(data) / batch_size)))
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    warmup = max(1, min(10, steps // 4))  # 10 steps, fewer in a short run (a quarter of it)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (1 - s / steps))
    rng = random.Random(seed)
    order: list[int] = []
    hist: dict[str, list[float]] = {"loss": []}
    pm.train()
    bar = tqdm(range(steps), desc="LoRA finetune", disable=not progress, leave=False)
    for _ in bar:
        if len(order) < batch_size:
            extra = list(range(len(data)))
            rng.shuffle(extra)
            order += extra
        batch, order = [data[i] for i in order[:batch_size]], order[batch_size:]
        ids, labels, mask = _right_pad(batch, lm.tokenizer.pad_token_id, lm.device)
        loss = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist["loss"].append(float(loss.detach()))
        bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}")
    pm.eval()
    lm.model = pm.merge_and_unload()
    lm.model.eval()
    lm.refresh_fingerprint()  # the merge edits weights through .data, which torch's version counters do not see
    return {"steps": steps, **hist}


def _right_pad(
    batch: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(p) + len(c) for p, c in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (p, c) in enumerate(batch):
        seq = p + c
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(c)
        mask[i, : len(seq)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def save_model_dir(lm: LoadedModel, path: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Save model (safetensors) + tokenizer to ``path`` atomically (temporary name, then rename)."""
    with atomic_dir(path) as tmp:
        lm.model.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return Path(path)
