"""Turn user inputs (plain strings or chat conversations) into left-padded token batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import UserError

Message = dict
PromptLike = str | Sequence[Message]


def render_prompt(
    tokenizer: object,
    item: PromptLike,
    *,
    chat: bool | None = None,
    tools: list[dict] | None = None,
    system: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """A conversation goes through the model's chat template; a string is used as is unless ``chat=True``."""
    if isinstance(item, str):
        if not chat:
            return item
        messages: list[Message] = [{"role": "user", "content": item}]
    elif isinstance(item, Sequence) and all(isinstance(m, dict) and "role" in m for m in item):
        if chat is False:
            raise ValueError("a chat conversation was given with chat=False; pass chat=None or True")
        messages = list(item)
    else:
        raise ValueError(
            f"a prompt must be a string or a list of {{'role', 'content'}} dicts, got {type(item).__name__}"
        )
    if system is not None and (not messages or messages[0].get("role") != "system"):
        messages = [{"role": "system", "content": system}, *messages]
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserError("this tokenizer has no chat template; pass plain strings with chat=False")
    kwargs = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )


def render_prompts(tokenizer: object, items: Sequence[PromptLike], **kwargs: object) -> list[str]:
    if isinstance(items, str):
        raise ValueError("expected a list of prompts, got a single string; wrap it in a list")
    if len(items) == 0:
        raise ValueError("the prompt list is empty; pass at least one prompt")
    return [render_prompt(tokenizer, it, **kwargs) for it in items]


def tokenize_texts(tokenizer: object, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text; special tokens are added only to texts that do not already start with one."""
    out = []
    bos = getattr(tokenizer, "bos_token", None)
    for t in texts:
        templated = bos is not None and t.startswith(bos) or t.startswith("<|")
        ids = tokenizer(t, add_special_tokens=not templated)["input_ids"]
        if len(ids) == 0:
            raise ValueError(f"prompt {t!r} tokenizes to zero tokens")
        out.append(list(ids))
    return out


def left_pad(
    batch_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input_ids and attention_mask."""
    width = max(len(x) for x in batch_ids)
    ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, x in enumerate(batch_ids):
        if len(x):
            ids[i, width - len(x) :] = torch.tensor(list(x), dtype=torch.long)
            mask[i, width - len(x) :] = 1
    return ids.to(device), mask.to(device)


def position_ids_from_mask(mask: torch.Tensor, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """Positions that skip padding, so a left-padded row sees the same positions as the row alone."""
    pos = mask.long().cumsum(-1) - 1
    pos = pos.clamp(min=0)
    if isinstance(offset, torch.Tensor):
        return pos + offset.view(-1, 1)
    return pos + offset


# What one forward costs beyond its tokens, in tokens (SmolLM2-135M on one CPU thread: 20-45 by batch shape,
# from a [32, 32] forward's cost per token against [1, 1] .. [8, 16] forwards); the batch cut points of single
# forwards (capture, scoring) weigh padding against it.
FORWARD_OVERHEAD_TOKENS = 48


def length_sorted_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_tokens: int | None = None,
    extra: int = 0,
    overhead: int | None = None,
) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), longest first; callers restore the order.

    With ``max_tokens`` a batch also stops growing where its padded size, rows x (its longest length + ``extra``),
    would pass it (one row at least): long prompts go in smaller batches (their cache is what fills memory), short
    ones fill ``batch_size`` (a decode step costs about the same for 8 rows as for 32 on a CPU: the weights are
    read once per step).

    With ``overhead`` (what one forward costs beyond its padded tokens, in tokens) the cut points are chosen to
    minimise padded tokens + overhead per batch over the sorted lengths (for single forwards: capture, scoring):
    a few long conversations then go in a batch of their own instead of padding a batch of short prompts to
    their length."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    if overhead is not None and overhead < 0:
        raise ValueError(f"overhead must be >= 0 or None, got {overhead}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if overhead is not None:
        return _cheapest_cuts(order, lengths, batch_size, max_tokens, extra, overhead)
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size:
            widest = max(1, lengths[batches[-1][0]] + extra)
            if (len(batches[-1]) + 1) * widest <= max_tokens:
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches


def _cheapest_cuts(
    order: list[int],
    lengths: Sequence[int],
    batch_size: int,
    max_tokens: int | None,
    extra: int,
    overhead: int,
) -> list[list[int]]:
    """Contiguous runs of ``order`` (longest first) of at most ``batch_size`` rows and ``max_tokens`` padded
    tokens that minimise the sum of rows x widest + ``overhead`` (dynamic programming; ties: fewer batches)."""
    n = len(order)
    best: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (cost, batches) of the first i rows
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        choice = None
        for k in range(1, min(batch_size, i) + 1):
            j = i - k
            width = max(1, lengths[order[j]] + extra)  # order[j] is the longest of rows j..i-1
            if k > 1 and max_tokens is not None and k * width > max_tokens:
                break  # a longer run only widens
            cost = (best[j][0] + overhead + k * width, best[j][1] + 1)
            if choice is None or cost < choice[0]:
                choice = (cost, j)
        best[i], cut[i] = choice
    batches = []
    i = n
    while i > 0:
        batches.append(order[cut[i] : i])
        i = cut[i]
    return batches[::-1]
