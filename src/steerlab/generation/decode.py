"""Batched decoding from a prefill: per-row stop rules, lengths and samplers; finished rows leave the batch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..models import LoadedModel
from ..models.hf_compat import cache_kwargs, output_cache
from ..models.phase import DECODE, forward_phase
from .prefill import croppable
from .rules import LogitsRule, fixed_tail
from .sampling import RowSampler

TRIM_COLUMNS = 32  # unattended leading cache columns worth a copy of the cache to drop (Decoder._trim)
StopFn = Callable[[str], bool]
TokenFn = Callable[[int, int, str], None]  # (prompt index, token id, newly decoded text)


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    stopped_by: str  # "eos", "stop" (the stop rule fired), "length" or "cancelled"


@dataclass
class DecodeRules:
    """What decoding needs beyond the prefill: indexed by prompt index."""

    eos: set[int]
    max_new: list[int]
    sampler: RowSampler
    stop: StopFn | None = None
    on_token: TokenFn | None = None
    logits_rule: LogitsRule | None = None
    cancelled: Callable[[int], bool] | None = None  # prompt index -> stop now (its client left)

    def needs_text(self) -> bool:
        """Whether decoding must keep each row's text (for the stop rule or streaming)."""
        return self.stop is not None or self.on_token is not None

    def stops(self, i: int, text: str) -> bool:
        """Whether prompt ``i``'s reply ``text`` is finished by the stop rule (a joined stream's rules give each part
        its own)."""
        return self.stop is not None and self.stop(text)

    def with_rule(self, rule: LogitsRule | None) -> DecodeRules:
        """The same rules with ``rule`` (e.g. a condition's own) added."""
        from dataclasses import replace

        from .rules import compose

        return replace(self, logits_rule=compose([self.logits_rule, rule])) if rule is not None else self


def decode(
    lm: LoadedModel,
    out: object,
    mask: torch.Tensor,
    next_pos: torch.Tensor,
    rows: list[list[int]],
    index: Sequence[int],
    rules: DecodeRules,
) -> list[Generation]:
    """Decode from a prefill's output; ``index[j]`` is the prompt index of batch row j. A finished row leaves the
    batch when its cache rows can be dropped, otherwise it keeps feeding padding that its mask hides."""
    d = Decoder(lm, out, mask, next_pos, rows, index, rules)
    d.run()
    return d.results()


class Decoder:
    """``decode`` as steps: ``step`` decodes one token for every live row, and ``join`` takes another decoder's rows
    into this batch between steps (rows of several batches and conditions share each step's weight reads)."""

    def __init__(
        self,
        lm: LoadedModel,
        out: object,
        mask: torch.Tensor,
        next_pos: torch.Tensor,
        rows: list[list[int]],
        index: Sequence[int],
        rules: DecodeRules,
    ) -> None:
        from ..steering import active_handles

        self.lm, self.rows, self.index, self.rules = lm, list(rows), list(index), rules
        self.mask, self.next_pos = mask, next_pos
        self.cache = output_cache(out)
        self.logits = out.logits[:, -1]
        bsz = len(rows)
        self.gen: list[list[int]] = [[] for _ in range(bsz)]
        self.text: list[str] = [""] * bsz
        self.sent: list[int] = [0] * bsz  # characters already passed to on_token
        self.stopped: list[str | None] = [None] * bsz
        self.live = list(range(bsz))  # batch row of each row still in the tensors
        self.compact = croppable(self.cache)
        self.handles = active_handles(lm)
        self.finished = False
        # rows whose prompts go through the next step's forward (``add_prompt``)
        self.pending: list[_Prompt] = []
        for j in range(bsz):
            if rules.max_new[self.index[j]] < 1:
                self.stopped[j] = "length"

    def run(self) -> None:
        """Decode until every row has stopped."""
        try:
            while not self.finished:
                self._step()
        finally:
            for h in self.handles:
                h.row_index = None

    def step(self) -> None:
        """One decode step with the cache kept in place (a running batch that rows join: ``DecodeStream``,
        ``DecodePool``)."""
        if not self.finished:
            self._step()

    def _step(self) -> None:
        rules, tok, index = self.rules, self.lm.tokenizer, self.index
        gen, text, sent, stopped = self.gen, self.text, self.sent, self.stopped
        if rules.cancelled is not None:
            for b in self.live:
                if stopped[b] is None and rules.cancelled(index[b]):
                    stopped[b] = "cancelled"
        if all(s is not None for s in stopped) and not self.pending:
            self.finished = True
            return
        need_text = rules.needs_text()
        prompt_rows = [index[b] for b in self.live]
        logits = self.logits
        if rules.logits_rule is not None:
            logits = rules.logits_rule(prompt_rows, [gen[b] for b in self.live], logits.float().clone())
        nxt = rules.sampler.pick(logits, prompt_rows)
        for j, b in enumerate(self.live):
            if stopped[b] is not None:
                continue
            t = int(nxt[j])
            if t in rules.eos:
                stopped[b] = "eos"
                continue
            for tt in [t, *_tail(rules, index[b], gen[b], t, tok)]:
                gen[b].append(tt)
                if need_text:
                    text[b] = tok.decode(gen[b], skip_special_tokens=False)
                    if rules.on_token is not None and not text[b].endswith("\ufffd"):
                        rules.on_token(index[b], tt, text[b][sent[b] :])
                        sent[b] = len(text[b])
                if rules.stops(index[b], text[b]):
                    stopped[b] = "stop"
                elif len(gen[b]) >= rules.max_new[index[b]]:
                    stopped[b] = "length"
                if stopped[b] is not None:
                    break
        if all(s is not None for s in stopped) and not self.pending:
            self.finished = True
            return
        alive = torch.tensor([stopped[b] is None for b in self.live], device=self.lm.device)
        if self.compact and not bool(alive.all()):
            keep = torch.nonzero(alive).flatten()
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[keep], layer.values[keep]
            self.mask, self.next_pos, nxt = self.mask[keep], self.next_pos[keep], nxt[keep]
            self.live = [self.live[int(i)] for i in keep]
            alive = alive[keep]
            for h in self.handles:
                h.row_index = list(self.live)
            self._trim()
        n = len(self.live)
        feed = torch.where(alive, nxt, torch.full_like(nxt, tok.pad_token_id)).view(n, 1)
        self.mask = torch.cat([self.mask, alive.long().view(n, 1)], dim=1)
        if self.pending:
            self._packed_forward(feed)
            return
        with forward_phase(self.lm, DECODE):
            out = self.lm.model(
                input_ids=feed,
                attention_mask=self.mask,
                position_ids=self.next_pos,
                use_cache=True,
                logits_to_keep=1,
                **cache_kwargs(self.lm.model, self.cache),
            )
        self.cache = output_cache(out)
        self.next_pos = self.next_pos + 1
        self.logits = out.logits[:, -1]

    @property
    def pending_rows(self) -> int:
        """Rows added by ``add_prompt`` that join at the next step."""
        return sum(len(p.index) for p in self.pending)

    def fusable(self) -> bool:
        """Whether ``add_prompt`` can take rows: finished rows leave the cache, no steering handle watches the steps,
        and the cache keeps a shared prefix once (``steerlab.models.prefix_attention``), whose attention knows a
        packed forward."""
        layers = getattr(self.cache, "layers", None) or []
        return (
            self.compact
            and not self.handles
            and not self.finished
            and bool(layers)
            and all(getattr(x, "prefix", None) is not None and hasattr(x, "pack") for x in layers)
        )

    def add_prompt(
        self,
        rows: list[list[int]],
        index: Sequence[int],
        suffix: torch.Tensor,
        suffix_mask: torch.Tensor,
        pos: torch.Tensor,
        setup: object | None = None,
    ) -> None:
        """Rows that join this batch with their prompts' forward packed into the next step's (a server's request
        admitted while others decode: one read of the weights for both, ``steerlab.models.packed``). ``suffix``,
        ``suffix_mask``, ``pos`` [n, L]: each row's tokens after the cache's shared prefix, left-padded, and their
        positions; ``index``: the rows' prompt indices (the rules are this decoder's). ``setup``: the group's row setup
        (``setup(list(range(n)))``), entered for that forward only; its hooks must be ``prompt_last`` steering handles,
        which then act at these rows' last prompt tokens alone. Needs ``fusable()``."""
        if not self.fusable():
            raise ValueError("this decoder cannot take prompts into its steps (see Decoder.fusable)")
        self.pending.append(_Prompt(list(rows), list(index), suffix, suffix_mask, pos, setup))

    def _packed_forward(self, feed: torch.Tensor) -> None:
        """The step's forward with the pending prompts packed after the running rows' tokens; the new rows join the
        batch with the logits of their last prompt tokens (they sample their first token at the next step)."""
        from ..models.packed import Packing

        new, self.pending = self.pending, []
        b = len(self.live)
        length = max(int(p.suffix.shape[1]) for p in new)
        suffix = torch.cat([_left_pad(p.suffix, length, 1, self.lm.tokenizer.pad_token_id) for p in new])
        smask = torch.cat([_left_pad(p.suffix_mask, length, 1) for p in new])
        pos = torch.cat([_left_pad(p.pos, length, 1) for p in new])
        k = int(suffix.shape[0])
        width = max(int(self.mask.shape[1]), length) if b else length
        mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(smask, width, 1)]) if b else smask
        pack = Packing(b, k, length, mask.bool())
        ids = torch.cat([feed.view(1, b), suffix.view(1, k * length)], dim=1)
        positions = torch.cat([self.next_pos.view(1, b), pos.view(1, k * length)], dim=1)
        keep = torch.cat([torch.arange(b), b + length * torch.arange(1, k + 1) - 1]).to(
            self.lm.device
        )  # each running row's token and each new row's last prompt token
        layers = self.cache.layers
        for layer in layers:
            layer.pack = pack
        try:
            with contextlib.ExitStack() as stack, forward_phase(self.lm, DECODE):
                _enter_setups(self.lm, stack, new, b, length)
                out = self.lm.model(
                    input_ids=ids,
                    position_ids=positions,
                    use_cache=True,
                    logits_to_keep=keep,
                    **cache_kwargs(self.lm.model, self.cache),
                )
        finally:
            for layer in layers:
                layer.pack = None
        self.cache = output_cache(out)
        self.mask = mask.long()
        self.next_pos = torch.cat([self.next_pos + 1, pos[:, -1:] + 1])
        self.logits = out.logits[0]
        base = len(self.rows)
        for p in new:
            for r, i in zip(p.rows, p.index):
                self.live.append(base)
                self.rows.append(r)
                self.index.append(i)
                self.gen.append([])
                self.text.append("")
                self.sent.append(0)
                self.stopped.append("length" if self.rules.max_new[i] < 1 else None)
                base += 1
        self.finished = all(s is not None for s in self.stopped)

    def _trim(self) -> None:
        """Drop the leading cache columns that no live row attends to (padding left by rows that have left): a batch
        that rows keep joining would otherwise grow by a column per step for as long as it never empties."""
        used = self.mask.any(dim=0)
        lead = int(used.long().argmax())
        if lead < TRIM_COLUMNS:
            return
        self.mask = self.mask[:, lead:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]

    def live_tokens(self) -> int:
        """Cache slots the rows still decoding may come to hold: rows x (mask width + the most new tokens any of
        them may still add), what joining them adds to memory (as ``batch_tokens`` counts a batch)."""
        rows = [b for b in self.live if self.stopped[b] is None]
        room = max((self.rules.max_new[self.index[b]] - len(self.gen[b]) for b in rows), default=0)
        return len(self.live) * (int(self.mask.shape[1]) + room)

    def results(self) -> list[Generation]:
        return [self._result(b) for b in range(len(self.rows))]

    def _result(self, b: int) -> Generation:
        g = self.gen[b]
        final = self.lm.tokenizer.decode(g, skip_special_tokens=False)
        held = final[self.sent[b] :]  # text held back for an incomplete character
        if self.rules.on_token is not None and held:
            self.rules.on_token(self.index[b], -1, held)
        return Generation(final, g, len(self.rows[b]), self.stopped[b] or "length")

    def joinable(self, other: Decoder) -> bool:
        """Whether ``other``'s rows can join this decoder's batch: both drop finished rows from their caches, no
        steering handle watches either's steps, and their caches hold the same shared prefix (or none)."""
        if not (self.compact and other.compact) or self.handles or other.handles or self.finished:
            return False
        mine, theirs = self.cache.layers, other.cache.layers
        return len(mine) == len(theirs) and all(
            _same_prefix(getattr(a, "prefix", None), getattr(b, "prefix", None)) for a, b in zip(mine, theirs)
        )

    def join(self, other: Decoder) -> None:
        """Take ``other``'s rows (a fresh or running decoder, ``joinable``) into this batch between two steps: the
        narrower cache is padded on the left with masked slots, as a prefill pads shorter prompts. ``other``'s
        prompt indices must not clash with this one's (the rules of both are this decoder's)."""
        if not self.joinable(other):
            raise ValueError("these decoders cannot share a batch (see Decoder.joinable)")
        width = max(int(self.mask.shape[1]), int(other.mask.shape[1]))
        for a, b in zip(self.cache.layers, other.cache.layers):
            a.keys = torch.cat([_left_pad(a.keys, width, 2), _left_pad(b.keys, width, 2)])
            a.values = torch.cat([_left_pad(a.values, width, 2), _left_pad(b.values, width, 2)])
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(other.mask, width, 1)])
        self.next_pos = torch.cat([self.next_pos, other.next_pos])
        self.logits = torch.cat([self.logits, other.logits])
        base = len(self.rows)
        self.live += [base + b for b in other.live]
        self.rows += other.rows
        self.index += other.index
        self.gen += other.gen
        self.text += other.text
        self.sent += other.sent
        self.stopped += other.stopped
        self.finished = False

    def pop_finished(self) -> list[tuple[int, Generation]]:
        """(prompt index, result) of every row that stopped since the last call, which this decoder then forgets (a
        long-running batch does not grow with the rows that passed through it)."""
        if not self.compact:
            raise ValueError("pop_finished needs a cache that drops finished rows (Decoder.compact)")
        in_batch = set() if self.finished else set(self.live)
        done = [b for b, s in enumerate(self.stopped) if s is not None and b not in in_batch]
        out = [(self.index[b], self._result(b)) for b in done]
        keep = [b for b in range(len(self.rows)) if b in in_batch]
        for name in ("rows", "index", "gen", "text", "sent", "stopped"):
            lst = getattr(self, name)
            setattr(self, name, [lst[b] for b in keep])
        where = {b: k for k, b in enumerate(keep)}
        self.live = [where[b] for b in self.live] if not self.finished else []
        return out


@dataclass
class _Prompt:
    """Rows waiting for their prompts' forward (``Decoder.add_prompt``)."""

    rows: list[list[int]]
    index: list[int]
    suffix: torch.Tensor
    suffix_mask: torch.Tensor
    pos: torch.Tensor
    setup: object | None = None


def _enter_setups(
    lm: LoadedModel, stack: contextlib.ExitStack, new: list[_Prompt], start: int, length: int
) -> None:
    """Enter each pending group's row setup for the packed forward, its handles pointed at the flat positions of its
    rows' last prompt tokens (row k of the packed prompts ends at ``start + (k + 1) * length - 1``)."""
    from ..models.phase import active_interventions

    for p in new:
        n = len(p.index)
        if p.setup is not None:
            before = {id(h) for h in active_interventions(lm)}
            stack.enter_context(p.setup(list(range(n))))
            at = torch.tensor([start + (k + 1) * length - 1 for k in range(n)], device=lm.device)
            for h in active_interventions(lm):
                if id(h) in before:
                    continue
                if not hasattr(h, "pack_at"):
                    raise ValueError(
                        f"a packed row setup may add steering handles only, not {type(h).__name__}; "
                        "prefill this group apart"
                    )
                h.pack_at(at)
        start += n * length


def _same_prefix(a: tuple | None, b: tuple | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(x.data_ptr() == y.data_ptr() and x.shape == y.shape for x, y in zip(a, b))


def _left_pad(t: torch.Tensor, width: int, dim: int, fill: int = 0) -> torch.Tensor:
    """``t`` with ``fill`` before its columns along ``dim`` up to ``width`` (masked slots: never attended)."""
    n = width - int(t.shape[dim])
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_full(shape, fill), t], dim=dim)


def by_part(parts: Sequence[DecodeRules], n: int) -> DecodeRules:
    """The rules of a pooled decoder (``DecodePool``): part k's rules (its lengths, stop rule and logits rule) for
    prompt indices k*n .. k*n + n - 1 (greedy, no streaming: what ``generate_conditions`` allows)."""
    return _PartRules(parts, n)


class _PartRules(DecodeRules):
    """``DecodeRules`` over pooled prompt indices, each answered by its own part's stop rule."""

    def __init__(self, parts: Sequence[DecodeRules], n: int) -> None:
        self.parts, self.n = list(parts), n
        super().__init__(
            parts[0].eos,
            [m for r in parts for m in r.max_new],
            RowSampler(n * len(parts)),
            logits_rule=_ByPart([r.logits_rule for r in parts], n),
        )

    def needs_text(self) -> bool:
        return any(r.needs_text() for r in self.parts)

    def stops(self, i: int, text: str) -> bool:
        return self.parts[i // self.n].stops(i % self.n, text)


class _ByPart:
    """Each pooled row's logits shaped by its own part's rule, with the part's own prompt indices."""

    def __init__(self, rules: list[LogitsRule | None], n: int) -> None:
        self.rules, self.n = rules, n

    def __call__(
        self, rows: Sequence[int], gen: Sequence[Sequence[int]], logits: torch.Tensor
    ) -> torch.Tensor:
        for k, rule in enumerate(self.rules):
            js = [j for j, i in enumerate(rows) if i // self.n == k]
            if rule is None or not js:
                continue
            logits[js] = rule([rows[j] % self.n for j in js], [gen[j] for j in js], logits[js])
        return logits

    def fixed_tail(self, row: int, gen: Sequence[int]) -> list[int] | None:
        rule = self.rules[row // self.n]
        return None if rule is None else fixed_tail([rule], row % self.n, gen)


def _tail(rules: DecodeRules, i: int, gen: list[int], t: int, tok: object) -> list[int]:
    """Tokens row ``i`` must end with after ``t`` (a logits rule knows them, e.g. a complete call's closer), when the
    row stops within them: they are appended without a forward each. Empty when there is none, or when the row would
    go on after them (then the model must see them)."""
    if rules.logits_rule is None or not hasattr(rules.logits_rule, "fixed_tail"):
        return []
    tail = rules.logits_rule.fixed_tail(i, [*gen, t])
    if not tail:
        return []
    room = rules.max_new[i] - len(gen) - 1
    if room <= 0:
        return []
    ends = len(tail) >= room or rules.stops(i, tok.decode([*gen, t, *tail], skip_special_tokens=False))
    return list(tail[:room]) if ends else []


def eos_ids(lm: LoadedModel) -> set[int]:
    tok = lm.tokenizer
    found = [tok.eos_token_id, getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)]
    return {t for x in found if x is not None for t in (x if isinstance(x, list) else [x])}
