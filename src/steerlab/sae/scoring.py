"""Teacher-forced scoring, one batched loop: per-token log-probabilities of given token sequences, and from them
cross-entropy over whole texts or over completions only."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..finetune import completion_ids
from ..models import LoadedModel, left_pad, position_ids_from_mask, render_prompts, tokenize_texts
from ..models.phase import PROMPT, forward_phase
from ..models.text import length_sorted_batches


def token_logprobs(
    lm: LoadedModel,
    seqs: Sequence[Sequence[int]],
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "score",
) -> list[torch.Tensor]:
    """log p(token t | tokens < t) for t = 1..len-1 of each sequence, batched by length with left padding."""
    out: list[torch.Tensor | None] = [None] * len(seqs)
    batches = length_sorted_batches([len(s) for s in seqs], batch_size)
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            ids, mask = left_pad([seqs[i] for i in batch], lm.tokenizer.pad_token_id, lm.device)
            with forward_phase(lm, PROMPT):
                logits = lm.model(
                    input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
                ).logits
            logp = (
                torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            )
            for j, i in enumerate(batch):
                n = len(seqs[i]) - 1
                out[i] = logp[j, logp.shape[1] - n :].cpu() if n else torch.zeros(0)
    return out  # type: ignore[return-value]


def cross_entropy(
    lm: LoadedModel, texts: Sequence, batch_size: int = 16, chat: bool | None = None, progress: bool = False
) -> torch.Tensor:
    """Per-token next-token cross-entropy (nats) over all texts, padding excluded; shape [n_tokens]."""
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, texts, chat=chat))
    return -torch.cat(token_logprobs(lm, ids, batch_size, progress, desc="CE"))


def completion_ce(
    lm: LoadedModel, rows: Sequence[dict], batch_size: int = 32, progress: bool = False
) -> torch.Tensor:
    """Mean cross-entropy (nats/token) of each row's target completion (incl. end of turn) given its prompt."""
    data = completion_ids(lm, rows)
    logps = token_logprobs(lm, [p + c for p, c in data], batch_size, progress, desc="CE")
    return torch.stack([-lp[-len(c) :].mean() for lp, (_, c) in zip(logps, data)])
