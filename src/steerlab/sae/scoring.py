"""Teacher-forced scoring under a transcoder splice: completion cross-entropy, latent magnitudes, and the
decision-token log-probability of the tool marker."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..models import LoadedModel, left_pad, position_ids_from_mask
from ..steering import splice
from .finetune import completion_ids
from .transcoder import DeltaTranscoder, Transcoder


class SpliceRecorder:
    """Replaces MLP(layer) by a (delta) transcoder and sums |base acts|, |delta acts| and delta L0 over the
    positions it replaces (every position but BOS and padding); ``delta_mask`` zeroes chosen delta latents."""

    def __init__(
        self,
        lm: LoadedModel,
        layer: int,
        tc: Transcoder | DeltaTranscoder,
        alpha: float = 1.0,
        delta_mask: torch.Tensor | None = None,
    ) -> None:
        self.tc, self.alpha, self.mask = tc, alpha, delta_mask
        self.n = 0
        self.base_l1 = self.delta_l1 = self.delta_l0 = 0.0
        self.handle = splice(lm, layer, self._fn)

    def _fn(self, inp: torch.Tensor, out: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = inp.float()
            if isinstance(self.tc, DeltaTranscoder):
                base_out, base_acts = self.tc.base(x)
                d_acts = self.tc.delta.encode(x)
                if self.mask is not None:
                    d_acts = d_acts * self.mask.to(d_acts.device)
                y = base_out + self.alpha * (d_acts @ self.tc.delta.W_dec) if self.alpha else base_out
                self.delta_l1 += float(d_acts.abs().sum(-1)[valid].sum())
                self.delta_l0 += float((d_acts > 0).sum(-1)[valid].sum())
            else:
                y, base_acts = self.tc(x)
            self.base_l1 += float(base_acts.abs().sum(-1)[valid].sum())
            self.n += int(valid.sum())
        return y.to(out.dtype)

    def stats(self) -> dict:
        n = max(1, self.n)
        return {
            "mean_abs_base_acts": self.base_l1 / n,
            "mean_abs_delta_acts": self.delta_l1 / n,
            "delta_l0": self.delta_l0 / n,
        }

    def __enter__(self) -> SpliceRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def completion_ce(
    lm: LoadedModel, rows: Sequence[dict], batch_size: int = 32, progress: bool = False
) -> torch.Tensor:
    """Mean cross-entropy (nats/token) of each row's target completion (incl. end of turn) given its prompt."""
    data = completion_ids(lm, rows)
    out = torch.empty(len(data))
    with torch.inference_mode():
        for i in tqdm(range(0, len(data), batch_size), desc="CE", disable=not progress, leave=False):
            chunk = data[i : i + batch_size]
            ids, mask = left_pad([p + c for p, c in chunk], lm.tokenizer.pad_token_id, lm.device)
            logits = lm.model(
                input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
            ).logits
            logp = torch.log_softmax(logits[:, :-1].float(), -1)
            nll = -logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            for j, (_, c) in enumerate(chunk):
                out[i + j] = nll[j, -len(c) :].mean().cpu()
    return out


def decision_logprob(
    lm: LoadedModel, rows: Sequence[dict], token_id: int, batch_size: int = 32
) -> torch.Tensor:
    """log P(token_id) at the decision token (the first completion token), one value per row."""
    data = completion_ids(lm, rows)
    out = torch.empty(len(data))
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            chunk = data[i : i + batch_size]
            ids, mask = left_pad([p for p, _ in chunk], lm.tokenizer.pad_token_id, lm.device)
            logits = lm.model(
                input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
            ).logits
            out[i : i + len(chunk)] = torch.log_softmax(logits[:, -1].float(), -1)[:, token_id].cpu()
    return out
