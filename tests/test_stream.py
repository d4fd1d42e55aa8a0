"""Continuous batching (``DecodeStream``): rows that join a running batch between steps, and leave it as soon as
they stop, decode exactly as they would alone."""

import pytest
import torch

from steerlab.generation import generate
from steerlab.generation.decode import DecodeRules
from steerlab.generation.prefix_store import PrefixStore
from steerlab.generation.rules import ForcedPrefix
from steerlab.generation.sampling import RowSampler
from steerlab.generation.stream import DecodeStream
from steerlab.models import render_prompts, tokenize_texts
from steerlab.steering import steer

SYSTEM = "You are a tool-using assistant. Think before answering. " * 2
FIRST = ["hello there, how are you today?", "hi", "what is the weather like in Paris right now?"]
LATER = ["tell me a joke about cats and dogs, please", "ok"]


def _ids(lm, prompts):
    return tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts, chat=True, system=SYSTEM))


def _head(lm):
    """The system turn's tokens: every prompt's ids start with them."""
    a, b = _ids(lm, ["x"])[0], _ids(lm, ["y z"])[0]
    n = 0
    while a[n] == b[n]:
        n += 1
    return a[:n]


def _rules(lm, n, max_new, **kw):
    return DecodeRules(set(), [max_new] * n, kw.pop("sampler", RowSampler(n)), **kw)


@pytest.mark.parametrize("stored_head", [False, True])
def test_rows_joining_mid_decode_equal_each_row_alone(tiny_models, stored_head, monkeypatch):
    """Group B joins after group A's third step (other prompt lengths, another max length, a logits rule of its
    own); every row equals ``generate`` on that prompt alone, and finished rows come back before the others. The
    decoder drops unattended leading cache columns as soon as there is one (Decoder._trim). With a stored head, B's
    prompts go through the model inside A's next step (one packed forward) instead of a prefill of their own."""
    from steerlab.generation import decode as decode_mod

    monkeypatch.setattr(decode_mod, "TRIM_COLUMNS", 1)
    lm = tiny_models("llama")
    store = PrefixStore(lm) if stored_head else None
    head = _head(lm) if stored_head else None
    forced = [7, 8, 9]
    stream = DecodeStream(lm, store)
    a = stream.admit(_ids(lm, FIRST), _rules(lm, 3, 9), head=head)
    seen: dict[int, object] = {}
    order: list[int] = []
    for _ in range(3):
        for i, g in stream.step():
            seen[i] = g
            order.append(i)
    rule = ForcedPrefix(lambda i: forced if i == 0 else None)
    b = stream.admit(_ids(lm, LATER), _rules(lm, 2, 4, logits_rule=rule), head=head)
    assert (a, b) == (0, 3)
    assert stream.rows == 5  # both groups share the next step
    assert stream.dec.pending_rows == (2 if stored_head else 0)
    while stream:
        for i, g in stream.step():
            seen[i] = g
            order.append(i)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert order.index(3) < order.index(0)  # B's 4-token rows finished first: they were not held for A's
    kw = dict(chat=True, system=SYSTEM, progress=False, ignore_eos=True)
    for i, p in enumerate(FIRST):
        assert seen[a + i].token_ids == generate(lm, [p], max_new_tokens=9, **kw)[0].token_ids
    for i, p in enumerate(LATER):
        ref = generate(
            lm,
            [p],
            max_new_tokens=4,
            logits_rule=ForcedPrefix(lambda _, i=i: forced if i == 0 else None),
            **kw,
        )
        assert seen[b + i].token_ids == ref[0].token_ids
    assert seen[b].token_ids[:3] == forced
    assert stream.rules.parts.offsets == []  # every group handed back and forgotten


def test_each_group_keeps_its_stop_rule_sampler_and_stream(tiny_models):
    """Per group: its own stop rule, seeded sampling and streaming callback with its own prompt indices; a
    cancelled row leaves at the next step."""
    lm = tiny_models("llama")
    streamed: dict[tuple[str, int], str] = {}

    def on(tag):
        def cb(i, _t, delta):
            streamed[(tag, i)] = streamed.get((tag, i), "") + delta

        return cb

    stream = DecodeStream(lm)
    stop_a = lambda text: len(text) >= 12  # noqa: E731
    sampler = RowSampler(2, temperature=[0.0, 1.5], seed=[None, 11])
    stream.admit(_ids(lm, FIRST[:2]), _rules(lm, 2, 8, stop=stop_a, on_token=on("a")))
    stream.step()
    gone: set[int] = set()  # prompt 1 of group b: its client leaves after its first step
    stream.admit(
        _ids(lm, LATER),
        _rules(lm, 2, 8, sampler=sampler, on_token=on("b"), cancelled=lambda i: i in gone),
    )
    seen: dict[int, object] = dict(stream.step())
    gone.add(1)
    seen.update(stream.run())
    kw = dict(chat=True, system=SYSTEM, progress=False, ignore_eos=True, max_new_tokens=8)
    for i, p in enumerate(FIRST[:2]):
        ref = generate(lm, [p], stop=stop_a, **kw)[0]
        assert (seen[i].token_ids, seen[i].stopped_by) == (ref.token_ids, ref.stopped_by)
        assert streamed[("a", i)] == seen[i].text
    ref = generate(lm, [LATER[0]], temperature=0.0, **kw)[0]
    assert seen[2].token_ids == ref.token_ids
    assert seen[3].stopped_by == "cancelled"
    alone = generate(lm, [LATER[1]], temperature=1.5, seed=11, **kw)[0]
    assert seen[3].token_ids == alone.token_ids[: len(seen[3].token_ids)]
    assert len(seen[3].token_ids) == 1
    assert streamed[("b", 0)] == seen[2].text


def test_prompt_last_steering_is_per_group_and_decoding_stays_shared(tiny_models):
    """A group's row setup (a push at the last prompt token) acts on its prefill only: the group joins the running
    rows, which it does not steer, and each row equals its own steered or plain run alone."""
    lm = tiny_models("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 8
    setup = lambda idx: steer(lm, v, layer=1, coef=torch.tensor([2.0, -2.0])[idx])  # noqa: E731
    stream = DecodeStream(lm)
    stream.admit(_ids(lm, FIRST), _rules(lm, 3, 6))
    stream.step()
    off = stream.admit(_ids(lm, LATER), _rules(lm, 2, 6), setup=setup)
    assert off is not None and stream.rows == 5
    got = dict(stream.run())
    kw = dict(chat=True, system=SYSTEM, progress=False, ignore_eos=True, max_new_tokens=6)
    for i, p in enumerate(FIRST):
        assert got[i].token_ids == generate(lm, [p], **kw)[0].token_ids
    steered = generate(lm, LATER, row_setup=setup, batch_size=1, **kw)
    assert [got[off + i].token_ids for i in range(2)] == [g.token_ids for g in steered]


def test_a_setup_that_steers_generated_tokens_is_refused(tiny_models):
    """A group's setup acts during its prefill only: one that would steer decoding gets a clear error, not silence."""
    lm = tiny_models("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))
    stream = DecodeStream(lm)
    with pytest.raises(ValueError, match="generated tokens"):
        stream.admit(
            _ids(lm, FIRST[:1]), _rules(lm, 1, 4), setup=lambda idx: steer(lm, v, layer=1, policy="generated")
        )
    assert not stream and stream.rules.parts.offsets == []


def test_groups_wait_where_rows_cannot_share_a_step(tiny_models):
    """A sliding-window model (gemma3) keeps padding out of its window: a second group waits for the running rows
    (admit returns None) and then decodes exactly."""
    lm = tiny_models("gemma3")
    stream = DecodeStream(lm)
    stream.admit(_ids(lm, FIRST[:1]), _rules(lm, 1, 4))
    stream.step()
    assert stream.admit(_ids(lm, LATER[:1]), _rules(lm, 1, 4)) is None
    first = dict(stream.run())
    off = stream.admit(_ids(lm, LATER[:1]), _rules(lm, 1, 4))
    later = dict(stream.run())
    kw = dict(chat=True, system=SYSTEM, progress=False, ignore_eos=True, max_new_tokens=4)
    assert first[0].token_ids == generate(lm, FIRST[:1], **kw)[0].token_ids
    assert later[off].token_ids == generate(lm, LATER[:1], **kw)[0].token_ids


def test_a_long_running_batch_forgets_the_rows_that_left(tiny_models):
    """Rows pass through one batch that never empties; what it holds stays bounded by the rows in flight."""
    lm = tiny_models("llama")
    stream = DecodeStream(lm)
    stream.admit(_ids(lm, ["start"]), _rules(lm, 1, 40))
    for k in range(12):
        stream.admit(_ids(lm, [FIRST[k % 3]]), _rules(lm, 1, 2))
        stream.step()
        stream.step()
        assert len(stream.dec.rows) <= 3 and len(stream.rules.parts.offsets) <= 3
    assert len(dict(stream.run())) == 1  # the first row, which ran through all of them


class _Record:
    """A logits rule that keeps every row's logits by (prompt index, tokens generated so far)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, rows, gen, logits):  # noqa: ANN001, ANN204
        for j, i in enumerate(rows):
            self.seen[(i, len(gen[j]))] = logits[j].clone()
        return logits


def test_prompts_packed_into_a_step_equal_each_row_alone(tiny_models):
    """Prompts prefilled inside the running rows' step (``Decoder.add_prompt``): two groups in one step, a prompt
    longer than the running rows' cache (the batch widens), and a step whose running rows all stop as the prompts go
    in (the forward carries the prompts alone). Every row's tokens equal ``generate`` alone, and every logit before
    every token equals the same stream's with each prompt prefilled apart (``fuse=False``); without a stored head (no
    prefix kept once) the groups are prefilled apart."""
    lm = tiny_models("llama")
    store, head = PrefixStore(lm), _head(lm)
    kw = dict(chat=True, system=SYSTEM, progress=False, ignore_eos=True)
    long = (
        "please write a very long and detailed answer about the history of the city of Paris and its bridges"
    )

    def widen(fuse: bool) -> tuple[dict, dict, int]:
        recs = [_Record() for _ in range(3)]  # one per group: a rule sees its group's own prompt indices
        stream = DecodeStream(lm, store, fuse=fuse)
        stream.admit(_ids(lm, ["hi"]), _rules(lm, 1, 8, logits_rule=recs[0]), head=head)
        stream.step()
        width = int(stream.dec.mask.shape[1])
        assert len(_ids(lm, [long])[0]) - len(head) > width
        stream.admit(_ids(lm, [long, "ok"]), _rules(lm, 2, 5, logits_rule=recs[1]), head=head)
        stream.admit(_ids(lm, FIRST[:1]), _rules(lm, 1, 3, logits_rule=recs[2]), head=head)
        pending = stream.dec.pending_rows
        seen = {(g, *k): x for g, r in enumerate(recs) for k, x in r.seen.items()}
        return dict(stream.run()), seen, pending

    got, seen, pending = widen(True)
    apart, seen_apart, pending_apart = widen(False)
    assert (pending, pending_apart) == (3, 0)
    assert seen.keys() == seen_apart.keys()
    for k in seen:
        torch.testing.assert_close(seen[k], seen_apart[k], rtol=1e-4, atol=1e-4)
    assert got[0].token_ids == generate(lm, ["hi"], max_new_tokens=8, **kw)[0].token_ids
    assert [got[1].token_ids, got[2].token_ids] == [
        g.token_ids for g in generate(lm, [long, "ok"], max_new_tokens=5, batch_size=1, **kw)
    ]
    assert got[3].token_ids == generate(lm, FIRST[:1], max_new_tokens=3, **kw)[0].token_ids
    assert {i: g.token_ids for i, g in got.items()} == {i: g.token_ids for i, g in apart.items()}

    rec = _Record()
    stream = DecodeStream(lm, store)
    a = stream.admit(_ids(lm, ["hi"]), _rules(lm, 1, 2), head=head)
    stream.step()
    b = stream.admit(_ids(lm, LATER), _rules(lm, 2, 4, logits_rule=rec), head=head)
    first = stream.step()  # "hi" takes its last token; the forward carries LATER's prompts alone
    assert [i for i, _ in first] == [a] and stream.rows == 2
    got = dict(stream.run())
    ref = generate(lm, LATER, max_new_tokens=4, batch_size=1, **kw)
    assert [got[b].token_ids, got[b + 1].token_ids] == [g.token_ids for g in ref]
    alone = _Record()
    s2 = DecodeStream(lm, store)
    s2.admit(_ids(lm, LATER), _rules(lm, 2, 4, logits_rule=alone), head=head)
    s2.run()
    assert rec.seen.keys() == alone.seen.keys()
    for (i, t), x in rec.seen.items():
        torch.testing.assert_close(x, alone.seen[(i, t)], rtol=1e-4, atol=1e-4)

    stream = DecodeStream(lm)  # no store: nothing kept once, so a prompt is its own forward
    stream.admit(_ids(lm, ["hi"]), _rules(lm, 1, 4))
    stream.step()
    stream.admit(_ids(lm, LATER), _rules(lm, 2, 4))
    assert stream.dec.pending_rows == 0


@pytest.mark.parametrize("family", ["qwen3", "gpt2", "mistral", "gemma2"])
def test_packed_prompts_equal_prompts_apart_on_other_families(tiny_models, family):
    """Other attention layouts (q/k norms, learned positions, grouped heads, softcapping): every logit before every
    token equals the stream's with each late prompt prefilled apart; where a family cannot share steps (a sliding
    window), nothing is packed and the rows still decode."""
    lm = tiny_models(family)
    store, head = PrefixStore(lm), _head(lm)

    def run(fuse: bool) -> tuple[dict, dict, int]:
        recs = [_Record(), _Record()]
        stream = DecodeStream(lm, store, fuse=fuse)
        stream.admit(_ids(lm, ["hi"]), _rules(lm, 1, 6, logits_rule=recs[0]), head=head)
        stream.step()
        off = stream.admit(_ids(lm, LATER), _rules(lm, 2, 4, logits_rule=recs[1]), head=head)
        pending = stream.dec.pending_rows if stream.dec is not None else 0
        got = dict(stream.run())
        if off is None:  # it waited for the running rows
            off = stream.admit(_ids(lm, LATER), _rules(lm, 2, 4, logits_rule=recs[1]), head=head)
            got.update(stream.run())
        seen = {(g, *k): x for g, r in enumerate(recs) for k, x in r.seen.items()}
        return {i: g.token_ids for i, g in got.items()}, seen, pending

    packed, seen, pending = run(True)
    apart, seen_apart, _ = run(False)
    assert pending == (0 if lm.arch.sliding_window is not None else 2)
    assert packed == apart and seen.keys() == seen_apart.keys()
    for k in seen:
        torch.testing.assert_close(seen[k], seen_apart[k], rtol=1e-4, atol=1e-4)


class _PackableSteer:
    """A row setup that declares itself packable: a per-row push at each row's last prompt token."""

    packable = True

    def __init__(self, lm, v, coefs) -> None:  # noqa: ANN001
        self.lm, self.v, self.coefs = lm, v, coefs

    def __call__(self, idx):  # noqa: ANN001, ANN204
        return steer(self.lm, self.v, layer=1, coef=self.coefs[idx])


def test_a_packable_setup_steers_its_rows_inside_the_packed_step_alone(tiny_models):
    """A group whose setup is packable goes into the running rows' step; its push lands on its own rows' last prompt
    tokens only (the running rows and the other rows' tokens are untouched): every logit equals the stream's with
    the group prefilled apart, and a setup that is not packable is prefilled apart."""
    lm = tiny_models("llama")
    store, head = PrefixStore(lm), _head(lm)
    v = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 8
    setup = _PackableSteer(lm, v, torch.tensor([2.0, -2.0]))

    def run(fuse: bool) -> tuple[dict, dict, int]:
        recs = [_Record(), _Record()]
        stream = DecodeStream(lm, store, fuse=fuse)
        stream.admit(_ids(lm, FIRST), _rules(lm, 3, 6, logits_rule=recs[0]), head=head)
        stream.step()
        stream.admit(_ids(lm, LATER), _rules(lm, 2, 5, logits_rule=recs[1]), setup=setup, head=head)
        pending = stream.dec.pending_rows
        got = {i: g.token_ids for i, g in stream.run()}
        return got, {(g, *k): x for g, r in enumerate(recs) for k, x in r.seen.items()}, pending

    packed, seen, pending = run(True)
    apart, seen_apart, _ = run(False)
    assert pending == 2 and packed == apart and seen.keys() == seen_apart.keys()
    for k in seen:
        torch.testing.assert_close(seen[k], seen_apart[k], rtol=1e-4, atol=1e-4)
    kw = dict(chat=True, system=SYSTEM, progress=False, ignore_eos=True, max_new_tokens=5)
    steered = generate(lm, LATER, row_setup=setup, batch_size=1, **kw)
    assert [packed[3], packed[4]] == [g.token_ids for g in steered]
    assert steered[0].token_ids != generate(lm, LATER[:1], **kw)[0].token_ids  # the push did change the reply

    stream = DecodeStream(lm, store)
    stream.admit(_ids(lm, FIRST), _rules(lm, 3, 6), head=head)
    stream.step()
    plain = lambda idx: steer(lm, v, layer=1, coef=torch.tensor([2.0, -2.0])[idx])  # noqa: E731
    stream.admit(_ids(lm, LATER), _rules(lm, 2, 5), setup=plain, head=head)
    assert stream.dec.pending_rows == 0  # not declared packable: its own prefill


def test_a_packable_setup_that_steers_more_than_the_last_prompt_token_is_refused(tiny_models):
    """A setup that calls itself packable but adds a handle acting beyond its rows' last prompt tokens gets a clear
    error at the packed step, and leaves no handle behind."""
    from steerlab.models.phase import active_interventions

    lm = tiny_models("llama")
    store, head = PrefixStore(lm), _head(lm)
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))

    class Liar:
        packable = True

        def __call__(self, idx):  # noqa: ANN001, ANN204
            return steer(lm, v, layer=1, policy="prompt_all")

    stream = DecodeStream(lm, store)
    stream.admit(_ids(lm, ["hi"]), _rules(lm, 1, 4), head=head)
    stream.step()
    stream.admit(_ids(lm, LATER), _rules(lm, 2, 4), setup=Liar(), head=head)
    assert stream.dec.pending_rows == 2
    with pytest.raises(ValueError, match="prompt_last"):
        stream.step()
    assert active_interventions(lm) == []
