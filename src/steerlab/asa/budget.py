"""How long the stages of a run will take on this machine, said before they start (``steerlab asa run --full``).

A rough estimate, not a promise: each generating stage's work is counted in tokens the model must process (prompt
tokens after the shared prefix, one token per screened push, whole calls of the length of the prompt's own example
call on up to every tool prompt, LoRA's forward and backward passes as three forwards), and divided by the speed
this machine has now, measured on the loaded model (a batched forward of prompt tokens, and decode steps after a
prompt-length cache). The estimate is printed, with what it counts, so a user can decide before an hour goes by.
"""

from __future__ import annotations

import math
import time

import torch

from ..models import render_prompts, tokenize_texts
from ..models.prefix import common_prefix_len
from ..tools import render_tool_call
from .config import AsaConfig
from .inputs import AsaInputs


def measure_speed(lm: object) -> tuple[float, float]:
    """(prompt tokens/s of a [16, 32] forward, decode tokens/s of a 32-row step after a 256-token cache)."""
    from ..models.hf_compat import cache_kwargs, output_cache

    g = torch.Generator().manual_seed(0)
    hi = min(1000, int(getattr(lm.model.config, "vocab_size", 1000)))
    x = torch.randint(hi // 10, hi, (16, 32), generator=g).to(lm.device)
    ctx = torch.randint(hi // 10, hi, (32, 256), generator=g).to(lm.device)
    with torch.inference_mode():
        lm.model(input_ids=x[:2], logits_to_keep=1)
        t = time.perf_counter()
        lm.model(input_ids=x, logits_to_keep=1)
        prompt = x.numel() / (time.perf_counter() - t)
        cache = output_cache(lm.model(input_ids=ctx, use_cache=True, logits_to_keep=1))
        step = torch.randint(hi // 10, hi, (32, 1), generator=g).to(lm.device)
        t = time.perf_counter()
        for i in range(3):
            out = lm.model(
                input_ids=step,
                position_ids=torch.full((32, 1), 256 + i, device=lm.device),
                use_cache=True,
                logits_to_keep=1,
                **cache_kwargs(lm.model, cache),
            )
            cache = output_cache(out)
        decode = 3 * 32 / (time.perf_counter() - t)
    return prompt, decode


def _suffix_tokens(lm: object, msgs: list) -> tuple[int, float]:
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, msgs))
    p = common_prefix_len(ids) if len(ids) > 1 else 0
    return p, sum(len(x) - p for x in ids) / max(1, len(ids))


def estimate(cfg: AsaConfig, lm: object, stages: list[str]) -> list[tuple[str, float, str]]:
    """(stage, seconds, what was counted) for the generating stages among ``stages``."""
    data = AsaInputs(cfg)
    prompt_rate, decode_rate = measure_speed(lm)
    example_call = render_tool_call(_example_call(data), cfg.call_format)
    call = len(lm.tokenizer(example_call, add_special_tokens=False)["input_ids"])
    n = {s: len(v) for s, v in data.examples.items()}
    _, suffix = _suffix_tokens(lm, data.messages("valid"))
    layers = cfg.n_top_layers + len(cfg.candidate_extra_layers(lm.n_layers))
    pushes = layers * sum(
        (2 * len(cfg.betas) if k == "asa" else 1) * len(cfg.strengths) for k in cfg.directions if k != "behav"
    )
    out: list[tuple[str, float, str]] = []

    def add(stage: str, prompt_tokens: float, decode_tokens: float, what: str) -> None:
        if stage in stages:
            out.append((stage, prompt_tokens / prompt_rate + decode_tokens / decode_rate, what))

    add(
        "screen",
        n["valid"] * suffix,
        n["valid"] * pushes,
        f"{pushes} pushes x {n['valid']} VALID prompts, one token each",
    )
    if "gate" in stages and cfg.gate_data:
        from .gate_stage import context_examples, render_contexts

        rows = context_examples(cfg, data)
        ids = tokenize_texts(lm.tokenizer, render_contexts(lm, cfg, data, rows))
        shared = common_prefix_len(ids) if len(ids) > 1 else 0
        add(
            "gate",
            sum(len(x) - shared for x in ids),
            0,
            f"{len(rows)} prompts with their own tool lists ({', '.join(cfg.gate_data)}), read whole",
        )
    add(
        "actions",
        cfg.action_rows * suffix,
        cfg.action_rows * len(cfg.actions) * call,
        f"{len(cfg.actions)} actions x {cfg.action_rows} VALID rows, whole calls of ~{call} tokens",
    )
    whole = 1 + (6 if cfg.rows == "all" else 1)  # baseline + the gated rows that decode calls
    add(
        "evaluate",
        n["test"] * suffix,
        n["test"] * (whole * call / 2 + 8 * 2),
        f"{whole} rows decoding calls (~{call} tokens on up to every tool prompt) and 7 by their first tokens, "
        f"x {n['test']} TEST prompts",
    )
    shots = 0.0
    for name in cfg.baselines:
        _, suf = _suffix_tokens(lm, data.messages("test", few_shot=name)[:64])
        shots += n["test"] * suf
    add(
        "baselines",
        shots,
        len(cfg.baselines) * n["test"] * call / 2,
        f"{len(cfg.baselines)} few-shot prompts x {n['test']} TEST prompts",
    )
    if cfg.lora_rank:
        rows = n["cal"] + n["train"]
        steps = max(1, round(cfg.lora_epochs * rows / 8))
        full_len = suffix + _suffix_tokens(lm, data.messages("cal")[:2])[0] + call
        add(
            "lora",
            rows * suffix + steps * 8 * full_len * 3 + n["test"] * suffix,
            rows * call + n["test"] * call / 2,
            f"targets for {rows} prompts, {steps} training steps of 8 whole prompts (forward + backward), TEST",
        )
    return out


def _example_call(data: AsaInputs) -> dict:
    shot = next((s for s in data.builder().few_shot if "call" in s), None)
    return shot["call"] if shot else {"name": "calculator", "arguments": {"expression": "1 + 1"}}


def describe(rows: list[tuple[str, float, str]]) -> str:
    total = sum(s for _, s, _ in rows)
    lines = [f"[steerlab] rough time estimate on this machine as it is now: about {_fmt(total)} in all"]
    lines += [f"[steerlab]   {stage:<10} ~{_fmt(sec):>8}  ({what})" for stage, sec, what in rows]
    return "\n".join(lines)


def _fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{math.ceil(seconds / 60)} min"
