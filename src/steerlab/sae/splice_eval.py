"""Splice a transcoder into a model's MLP at a layer, score teacher-forced cross-entropy, and collect training
pairs. The transcoder reads the MLP's input (after its norm) and replaces the MLP's output, at every position but
BOS, during scoring and generation alike."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..capture import capture
from ..models import LoadedModel, left_pad, position_ids_from_mask, render_prompts, tokenize_texts
from ..steering import splice
from .transcoder import DeltaTranscoder, Transcoder


def transcoder_splice(lm: LoadedModel, layer: int, tc: Transcoder | DeltaTranscoder, alpha: float = 1.0):  # noqa: ANN201
    """A splice handle (context manager) replacing MLP(layer) by the transcoder (base + alpha * delta)."""

    def fn(inp: torch.Tensor, out: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = inp.float()
            y = tc(x, alpha)[0] if isinstance(tc, DeltaTranscoder) else tc(x)[0]
        return y.to(out.dtype)

    return splice(lm, layer, fn)


def zero_mlp_splice(lm: LoadedModel, layer: int):  # noqa: ANN201
    """A splice handle that zeroes MLP(layer)'s output (at every position but BOS): the yardstick a transcoder's
    splice cost is compared with."""
    return splice(lm, layer, lambda inp, out, valid: torch.zeros_like(out))


def mlp_pairs(
    lm: LoadedModel, texts: Sequence, layer: int, batch_size: int = 16, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(MLP input after its norm, MLP output) at every token but the first of each text."""
    acts = capture(
        lm,
        texts,
        layers=[layer],
        sites=["mlp_in", "mlp"],
        positions="all",
        batch_size=batch_size,
        progress=progress,
    )
    x = torch.cat([a[1:] for a in acts[(layer, "mlp_in")]])
    y = torch.cat([a[1:] for a in acts[(layer, "mlp")]])
    return x, y


def cross_entropy(
    lm: LoadedModel, texts: Sequence, batch_size: int = 16, chat: bool | None = None, progress: bool = False
) -> torch.Tensor:
    """Per-token next-token cross-entropy (nats) over all texts, padding excluded; shape [n_tokens]."""
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, texts, chat=chat))
    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(ids), batch_size), desc="CE", disable=not progress, leave=False):
            input_ids, mask = left_pad(ids[i : i + batch_size], lm.tokenizer.pad_token_id, lm.device)
            logits = lm.model(
                input_ids=input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
            ).logits.float()
            logp = torch.log_softmax(logits[:, :-1], -1)
            tgt = input_ids[:, 1:]
            nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
            keep = (mask[:, 1:] == 1) & (mask[:, :-1] == 1)
            out.append(nll[keep].cpu())
    return torch.cat(out)
