"""One forward for the running rows' next tokens and new rows' prompts: a prompt prefilled inside a decode step.

Why: a server admits a request while other rows decode. Prefilled on its own, the request's prompt (after the
shared head) is a forward that reads every weight while the running rows wait; on a CPU a 20-token prompt for one
row costs about what a decode step for eight rows costs. Packed into the running rows' step, the two share one read
of the weights. The step's tokens go through the model as one sequence ``[running rows' tokens | new row 0's prompt
| new row 1's prompt | ...]`` (new rows padded on the left to one length); each layer's cache writes every token
where its row keeps it (a running row's next column; a new row's prompt in a new batch row, right-aligned like a
prefill's), and attention runs per part: the running rows as a decode step, the new rows as a prompt, each over the
shared prefix and its own row's keys. Exact: every query sees the keys and mask it would see in separate forwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SLACK = 64  # spare cache columns after a packed write, so the next decode steps write in place


@dataclass
class Packing:
    """The layout of one packed forward: ``running`` rows with one token each, then ``new`` rows of ``length``
    tokens each; ``mask`` [running + new, width] (bool): the cache columns each row attends to after the forward."""

    running: int
    new: int
    length: int
    mask: torch.Tensor

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def write(self, state: tuple, new: torch.Tensor) -> tuple:
        """A layer cache's (buffer, columns) after this forward (``packed_write``)."""
        return packed_write(state, new, self)

    def attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor],
        scale: float,
        softcap: float | None = None,
    ) -> torch.Tensor:
        """This forward's attention (``packed_attention``)."""
        return packed_attention(query, key, value, prefix, self, scale, softcap)


def packed_write(state: tuple, new: torch.Tensor, pack: Packing) -> tuple:
    """(buffer, columns) of one layer's keys or values after a packed forward: the running rows' buffer (its first
    ``columns`` columns in use) and ``new`` [1, H, running + new * length, D] → [running + new, H, width (+ slack), D],
    rows shifted right where the batch widens (the columns before them masked)."""
    buf, cols = state
    b, n, length, width = pack.running, pack.new, pack.length, pack.width
    h, d = new.shape[1], new.shape[3]
    grown = new.new_empty(b + n, h, width + SLACK, d)
    grown[:, :, :width].zero_()  # masked slots: zero, never garbage that 0 x inf could turn into NaN
    if b:
        grown[:b, :, width - 1 - cols : width - 1] = buf[:b, :, :cols]
        grown[:b, :, width - 1] = new[0, :, :b].transpose(0, 1)
    grown[b:, :, width - length : width] = new[0, :, b:].reshape(h, n, length, d).transpose(0, 1)
    return (grown, width)


def packed_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    pack: Packing,
    scale: float,
    softcap: float | None = None,
) -> torch.Tensor:
    """Attention for a packed forward: ``query`` [1, Hq, running + new * length, D]; ``key``/``value`` the batch's
    rows [running + new, Hkv, width, D] after ``packed_write``. Returns [1, tokens, Hq, D]."""
    from .prefix_attention import _causal_keep, prompt_attention, split_attention

    b, n, length, width = pack.running, pack.new, pack.length, pack.width
    hq, d = query.shape[1], query.shape[3]
    parts = []
    if b:
        qd = query[0, :, :b].transpose(0, 1).unsqueeze(2)  # [B, Hq, 1, D]
        md = pack.mask[:b, None, None, :]
        out = split_attention(qd, key[:b], value[:b], prefix, md, scale, softcap)
        parts.append(out.reshape(1, b, hq, d))
    qn = query[0, :, b:].reshape(hq, n, length, d).transpose(0, 1)  # [n, Hq, L, D]
    kn, vn = key[b:, :, width - length :], value[b:, :, width - length :]
    keep = pack.mask[b:, None, None, width - length :] & _causal_keep(length, length, query.device)
    if softcap is None:
        out = prompt_attention(qn, kn, vn, prefix, keep, scale)
    else:
        out = split_attention(qn, kn, vn, prefix, keep, scale, softcap)
    parts.append(out.reshape(1, n * length, hq, d))
    return torch.cat(parts, dim=1)
