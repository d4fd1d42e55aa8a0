"""Tool-call metrics of the SAE study by generation. The LoRA finetune itself lives in ``steerlab.finetune`` (ASA's
LoRA baseline uses it too); its names stay importable from here."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from ..finetune import LORA_TARGETS as LORA_TARGETS
from ..finetune import completion_ids as completion_ids
from ..finetune import conversation
from ..finetune import lora_finetune as lora_finetune
from ..finetune import save_model_dir as save_model_dir
from ..models import LoadedModel
from .metrics import call_metrics


def generate_calls(
    lm: LoadedModel,
    rows: Sequence[dict],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    context: contextlib.AbstractContextManager | None = None,
    progress: bool = True,
    desc: str = "generate",
) -> list[str]:
    """Greedy completions of the rows' prompts (chat template), optionally inside ``context`` (e.g. a splice).
    A row stops at its end of turn or once a tool call is closed."""
    from ..generation import generate
    from ..tools import call_complete

    with context or contextlib.nullcontext():
        gens = generate(
            lm,
            [conversation(r) for r in rows],
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            chat=True,
            stop=lambda t: call_complete(t, "calculator"),
            shared_prefix=False,
            progress=progress,
            desc=desc,
        )
    return [g.text for g in gens]


def subset_metrics(rows: Sequence[dict], texts: Sequence[str]) -> dict:
    """call_metrics per subset, plus copy_exact_rate on copy rows (the completion reproduced exactly)."""
    from ..eval.stats import wilson_interval

    out = {}
    for sub in sorted({r["subset"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["subset"] == sub]
        m = call_metrics([texts[i] for i in idx], [rows[i]["answer"] for i in idx])
        if sub == "copy":
            k = sum(texts[i].strip() == rows[i]["completion"].strip() for i in idx)
            m["copy_exact_rate"] = (k / len(idx), *wilson_interval(k, len(idx)))
        out[sub] = m
    return out
