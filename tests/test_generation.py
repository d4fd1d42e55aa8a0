import pytest
import torch

from steerlab.generation import generate, generate_conditions
from steerlab.models.prefix import common_prefix_len
from steerlab.steering import steer

PROMPTS = ["hello there, how are you today?", "hi", "what is the weather like in Paris right now?"]
SYSTEM = "You are a tool-using assistant. Think before answering. " * 2


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2  # always leaves one token per row


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3", "lfm2"])
def test_shared_prefix_and_batching_do_not_change_outputs(tiny_models, family):
    lm = tiny_models(family)
    kw = dict(max_new_tokens=6, chat=True, system=SYSTEM, progress=False)
    full = generate(lm, PROMPTS, shared_prefix=False, batch_size=3, **kw)
    shared = generate(lm, PROMPTS, shared_prefix=True, batch_size=2, **kw)
    single = [generate(lm, [p], shared_prefix=False, **kw)[0] for p in PROMPTS]
    assert [g.token_ids for g in full] == [g.token_ids for g in shared] == [g.token_ids for g in single]


def test_token_capped_batches_exact_and_equal_outputs(tiny_models):
    """A token cap splits long prompts into smaller batches (rows x (longest + extra) <= cap, one row at least),
    short ones fill batch_size; outputs, scores and captured states do not change."""
    from steerlab.capture import capture
    from steerlab.generation import next_token_scores
    from steerlab.models.text import length_sorted_batches

    lengths = [10, 3, 7, 3, 9, 2]
    assert length_sorted_batches(lengths, 4) == [[0, 4, 2, 1], [3, 5]]
    assert length_sorted_batches(lengths, 4, max_tokens=20) == [[0, 4], [2, 1], [3, 5]]
    assert length_sorted_batches(lengths, 4, max_tokens=20, extra=3) == [[0], [4], [2, 1], [3, 5]]
    assert length_sorted_batches(lengths, 4, max_tokens=1) == [[i] for i in (0, 4, 2, 1, 3, 5)]
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        length_sorted_batches(lengths, 4, max_tokens=0)
    # with a cost per forward the cut points minimise padded tokens + that cost: 30 + 9 + 2 x 100 beats
    # 40 + 6 + 2 x 100 (the greedy cut); a free forward leaves no padding; the cap still holds
    assert length_sorted_batches(lengths, 4, overhead=100) == [[0, 4, 2], [1, 3, 5]]
    assert length_sorted_batches(lengths, 4, overhead=0) == [[0], [4], [2], [1, 3], [5]]
    assert length_sorted_batches(lengths, 4, max_tokens=20, overhead=100) == [[0, 4], [2], [1, 3, 5]]
    # five long conversations no longer pad 27 short prompts to their length
    assert [len(b) for b in length_sorted_batches([200] * 5 + [20] * 27, 32, overhead=48)] == [5, 27]
    with pytest.raises(ValueError, match="overhead must be >= 0"):
        length_sorted_batches(lengths, 4, overhead=-1)
    lm = tiny_models("llama")
    prompts = [*PROMPTS, "a much longer question about " + "many things " * 12]
    kw = dict(max_new_tokens=5, chat=True, system=SYSTEM, progress=False, batch_size=4)
    plain = generate(lm, prompts, **kw)
    capped = generate(lm, prompts, batch_tokens=30, **kw)
    assert [g.token_ids for g in plain] == [g.token_ids for g in capped]
    v = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 8
    conds = {"plain": None, "push": lambda idx: steer(lm, v, layer=1, coef=2.0)}
    a = generate_conditions(lm, prompts, conds, **kw)
    b = generate_conditions(lm, prompts, conds, batch_tokens=30, **kw)
    assert all([g.token_ids for g in a[k]] == [g.token_ids for g in b[k]] for k in conds)
    s1 = next_token_scores(lm, prompts, conds, chat=True, progress=False, batch_size=4)
    s2 = next_token_scores(lm, prompts, conds, chat=True, progress=False, batch_size=4, batch_tokens=30)
    for k in conds:
        torch.testing.assert_close(s1[k], s2[k], atol=1e-5, rtol=1e-5)
    c1 = capture(lm, prompts, layers=[1], chat=True, progress=False, batch_size=4)
    c2 = capture(lm, prompts, layers=[1], chat=True, progress=False, batch_size=4, batch_tokens=30)
    torch.testing.assert_close(c1[(1, "block")], c2[(1, "block")], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "lfm2"])
def test_conditions_equal_separate_runs(tiny_models, family):
    lm = tiny_models(family)
    v = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 8
    conds = {
        "plain": None,
        "push": lambda idx: steer(lm, v, layer=1, coef=torch.tensor([1.0, -1.0, 2.0])[idx]),
        "gen": lambda idx: steer(lm, v, layer=2, coef=1.0, policy="generated"),
    }
    kw = dict(max_new_tokens=6, chat=True, system=SYSTEM, progress=False, batch_size=2)
    multi = generate_conditions(lm, PROMPTS, conds, **kw)
    for name, setup in conds.items():
        ref = generate(lm, PROMPTS, row_setup=setup, **kw)
        assert [g.token_ids for g in ref] == [g.token_ids for g in multi[name]], name
    assert [g.token_ids for g in multi["plain"]] != [g.token_ids for g in multi["push"]]


def test_conditions_decoded_together_equal_separate_runs(tiny_models, monkeypatch):
    """Rows of every batch and condition that leave decoding alone decode in one pool: each row keeps its own
    condition's logits rule (with its own prompt index) and equals a run of that condition alone; a condition
    steering generated tokens decodes alone; a pool capped at fewer rows or cache slots steps more often, same
    tokens; merge_conditions=False decodes each batch x condition to its end."""
    from steerlab.generation import api
    from steerlab.generation import decode as decode_mod
    from steerlab.generation import pool as pool_mod
    from steerlab.generation.rules import ForcedPrefix

    lm = tiny_models("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(5)) * 8
    forced = [7, 8, 9, 10, 11, 12]

    class Forcing:  # a row setup with its own logits rule: prompt 1's reply starts with ``forced``
        logits_rule = ForcedPrefix(lambda i: forced if i == 1 else None)

        def __call__(self, idx: list[int]) -> object:
            return steer(lm, v, layer=1, coef=0.5)

    conds = {
        "plain": None,
        "push": lambda idx: steer(lm, v, layer=1, coef=torch.tensor([1.0, -1.0, 2.0])[idx]),
        "forcing": Forcing(),
        "gen": lambda idx: steer(lm, v, layer=2, coef=1.0, policy="generated"),
    }
    joins: list[int] = []
    mid_decode: list[int] = []  # rows of the pool, tokens already decoded, when a group joined
    real = pool_mod.DecodePool.add

    def spy(self, dec):  # noqa: ANN001, ANN202
        joins.append(len(dec.rows))
        if self.dec is not None:
            mid_decode.append(max(len(g) for g in self.dec.gen))
        return real(self, dec)

    monkeypatch.setattr(pool_mod.DecodePool, "add", spy)
    monkeypatch.setattr(decode_mod, "TRIM_COLUMNS", 1)
    kw = dict(
        max_new_tokens=[3, 10, 7], chat=True, system=SYSTEM, progress=False, batch_size=2, ignore_eos=True
    )
    together = generate_conditions(lm, PROMPTS, conds, **kw)  # the default: pooled
    assert sum(joins) == 3 * len(PROMPTS)  # plain, push and forcing, every batch; gen decoded alone
    assert max(mid_decode) > 0  # groups joined rows already decoding (rows had left: ragged lengths)
    joins.clear()
    apart = generate_conditions(lm, PROMPTS, conds, merge_conditions=False, **kw)
    assert joins == []
    capped = generate_conditions(lm, PROMPTS, conds, batch_tokens=150, **kw)  # the pool steps on cache slots
    few = api.DecodePool(1, None)
    monkeypatch.setattr(api, "_pool", lambda o: few)
    one_row = generate_conditions(lm, PROMPTS, conds, **kw)
    assert few.dec is None and len(joins) > 0
    for name, setup in conds.items():
        ref = generate(lm, PROMPTS, row_setup=setup, **kw)
        for run in (together, apart, capped, one_row):
            assert [g.token_ids for g in run[name]] == [g.token_ids for g in ref], name
    assert together["forcing"][1].token_ids[: len(forced)] == forced
    assert together["forcing"][0].token_ids[: len(forced)] != forced


def test_conditions_with_their_own_lengths_and_stop_rules_equal_separate_runs(tiny_models):
    """per_condition gives a condition its own max_new_tokens, stop rule and logits rule while every condition
    shares each batch's context: each equals one generate call with those options, pooled or not; bad names and
    fields are refused, naming them."""
    from steerlab.generation.rules import ForcedPrefix

    lm = tiny_models("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(8)) * 8
    conds = {
        "plain": None,
        "push": lambda idx: steer(lm, v, layer=1, coef=1.5),
        "short": lambda idx: steer(lm, v, layer=1, coef=-1.0),
    }
    per = {
        "push": {
            "max_new_tokens": [2, 5, 3],
            "logits_rule": ForcedPrefix(lambda i: [9, 9] if i == 2 else None),
        },
        "short": {"max_new_tokens": 4, "stop": lambda text: len(text) >= 2},
    }
    kw = dict(max_new_tokens=9, chat=True, system=SYSTEM, progress=False, batch_size=2, ignore_eos=True)
    pooled = generate_conditions(lm, PROMPTS, conds, per_condition=per, **kw)
    apart = generate_conditions(lm, PROMPTS, conds, per_condition=per, merge_conditions=False, **kw)
    # batches cut for the longest condition: a short one's rows land in other batches than its own call's
    capped = generate_conditions(lm, PROMPTS, conds, per_condition=per, batch_tokens=60, **kw)
    for name, setup in conds.items():
        ref = generate(lm, PROMPTS, row_setup=setup, **{**kw, **per.get(name, {})})
        for run in (pooled, apart, capped):
            assert [g.token_ids for g in run[name]] == [g.token_ids for g in ref], name
    assert [len(g.token_ids) for g in pooled["plain"]] == [9, 9, 9]
    assert [len(g.token_ids) for g in pooled["push"]] == [2, 5, 3]
    assert pooled["push"][2].token_ids[:2] == [9, 9]
    assert all(g.stopped_by == "stop" for g in pooled["short"])
    with pytest.raises(ValueError, match=r"\['nope'\], which are not conditions"):
        generate_conditions(lm, PROMPTS, conds, per_condition={"nope": {}}, **kw)
    with pytest.raises(ValueError, match=r"sets \['batch_size'\]; a condition may set only max_new_tokens"):
        generate_conditions(lm, PROMPTS, conds, per_condition={"push": {"batch_size": 1}}, **kw)
    with pytest.raises(ValueError, match=r"per_condition\['push'\] must be a dict of options, got int"):
        generate_conditions(lm, PROMPTS, conds, per_condition={"push": 4}, **kw)


def test_conditions_under_an_outer_handle_equal_separate_runs(tiny_models):
    """A prompt-token steer entered before the call (it leaves decoding alone) stays on for every condition: no
    condition joins the pool, and each equals one generate call under the same handle."""
    lm = tiny_models("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(6)) * 8
    conds = {"plain": None, "push": lambda idx: steer(lm, v, layer=2, coef=1.5)}
    kw = dict(
        max_new_tokens=[3, 8, 5], chat=True, system=SYSTEM, progress=False, batch_size=2, ignore_eos=True
    )
    with steer(lm, v, layer=1, coef=-1.0, policy="prompt_last"):
        multi = generate_conditions(lm, PROMPTS, conds, **kw)
        for name, setup in conds.items():
            ref = generate(lm, PROMPTS, row_setup=setup, **kw)
            assert [g.token_ids for g in multi[name]] == [g.token_ids for g in ref], name


def test_pool_of_rows_joining_mid_decode_equals_each_alone(tiny_models, monkeypatch):
    """Batches of different widths join a running pool at different steps, rows stop at different lengths, and the
    pool trims the padding columns no live row needs: every row equals its own generate run."""
    from steerlab.generation import decode as decode_mod

    lm = tiny_models("llama")
    prompts = [*PROMPTS, "a much longer prompt " * 6, "x", "two words", "and a fourth one here"]
    lengths = [3, 17, 5, 40, 9, 2, 30]
    kw = dict(chat=True, system=SYSTEM, progress=False, ignore_eos=True)
    monkeypatch.setattr(decode_mod, "TRIM_COLUMNS", 2)  # trim often
    trimmed: list[int] = []
    real = decode_mod.Decoder._trim

    def spy(self):  # noqa: ANN001, ANN202
        width = self.mask.shape[1]
        real(self)
        trimmed.append(width - self.mask.shape[1])

    monkeypatch.setattr(decode_mod.Decoder, "_trim", spy)
    got = generate_conditions(lm, prompts, {"a": None, "b": None}, max_new_tokens=lengths, batch_size=2, **kw)
    assert max(trimmed) > 100  # the long prompt's columns, once it left
    for i, p in enumerate(prompts):
        ref = generate(lm, [p], max_new_tokens=lengths[i], **kw)[0]
        assert got["a"][i].token_ids == ref.token_ids and got["b"][i].token_ids == ref.token_ids, i
        assert len(ref.token_ids) == lengths[i]


def test_conditions_touching_earlier_tokens_are_computed_whole(tiny_models):
    lm = tiny_models("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(4)) * 8
    conds = {"all": lambda idx: steer(lm, v, layer=1, policy="all"), "plain": None}
    kw = dict(max_new_tokens=4, chat=True, system=SYSTEM, progress=False)
    multi = generate_conditions(lm, PROMPTS, conds, **kw)
    with steer(lm, v, layer=1, policy="all"):
        ref = generate(lm, PROMPTS, shared_prefix=False, **kw)
    assert [g.token_ids for g in multi["all"]] == [g.token_ids for g in ref]
    assert [g.token_ids for g in multi["all"]] != [g.token_ids for g in multi["plain"]]


def test_stop_rule_ends_rows_early(tiny_models):
    lm = tiny_models("llama")
    out = generate(lm, PROMPTS, max_new_tokens=8, chat=True, stop=lambda text: len(text) >= 2, progress=False)
    assert all(g.stopped_by in ("stop", "eos") and len(g.token_ids) <= 2 for g in out)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1"):
        generate(lm, PROMPTS, max_new_tokens=0)


def test_ignore_eos_makes_every_row_its_max_new_tokens():
    from steerlab.models import tiny_model

    lm = tiny_model("llama")  # its own model: the test changes its end-of-sequence token
    kw = dict(max_new_tokens=6, chat=True, progress=False, batch_size=3)
    free = generate(lm, PROMPTS, **kw)
    assert all(g.stopped_by == "length" for g in free)
    eos = free[0].token_ids[1]  # a token row 0 makes becomes the end of sequence
    k = free[0].token_ids.index(eos)
    lm.model.generation_config.eos_token_id = eos
    stopped = generate(lm, PROMPTS, **kw)
    assert stopped[0].stopped_by == "eos" and stopped[0].token_ids == free[0].token_ids[:k]
    full = generate(lm, PROMPTS, ignore_eos=True, **kw)
    assert [g.token_ids for g in full] == [g.token_ids for g in free]
    assert all(g.stopped_by == "length" and len(g.token_ids) == 6 for g in full)


@pytest.mark.parametrize("family", ["llama", "gpt2", "lfm2"])
def test_next_token_scores_match_full_forward(tiny_models, family):
    from steerlab.generation import next_token_scores
    from steerlab.models import left_pad, position_ids_from_mask, render_prompts, tokenize_texts

    lm = tiny_models(family)
    v = torch.randn(32, generator=torch.Generator().manual_seed(5)) * 6
    answer_ids = [[10, 11], [12], [13, 14]]
    conds = {"plain": None, "push": lambda idx: steer(lm, v, layer=1, coef=1.0)}
    chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in PROMPTS]
    got = next_token_scores(lm, chats, conds, token_ids=answer_ids, batch_size=2, progress=False)
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, chats))
    input_ids, mask = left_pad(ids, lm.tokenizer.pad_token_id, lm.device)
    for name, setup in conds.items():
        with setup([0, 1, 2]) if setup else torch.no_grad():
            with torch.no_grad():
                logits = lm.model(
                    input_ids=input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
                ).logits[:, -1]
        logp = torch.log_softmax(logits, -1)
        ref = torch.stack([torch.logsumexp(logp[:, t], -1) for t in answer_ids], -1).cpu()
        torch.testing.assert_close(got[name], ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got["plain"], got["push"])


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_rows_leaving_the_batch_keep_per_row_steering_right(tiny_models, family):
    """Finished rows are dropped from the batch; per-row 'generated' steering must follow the remaining rows."""
    lm = tiny_models(family)
    prompts = PROMPTS + ["tell me a story", "12 x 7 = ?"]
    coefs = torch.tensor([1.0, -1.0, 0.5, 2.0, -0.5])
    v = torch.randn(32, generator=torch.Generator().manual_seed(9)) * 6

    def setup(idx):
        return steer(lm, v, layer=2, coef=coefs[idx], policy="generated")

    free = generate(lm, prompts, max_new_tokens=8, chat=True, row_setup=setup, progress=False)
    early = {free[0].text[:2], free[2].text[:2]}

    def stop(text):  # rows 0 and 2 (and any row sharing their start) stop after two characters
        return text in early

    batched = generate(
        lm, prompts, max_new_tokens=8, chat=True, row_setup=setup, stop=stop, progress=False, batch_size=5
    )
    lengths = {len(g.token_ids) for g in batched}
    assert len(lengths) > 1  # some rows left early, others went on
    for i, p in enumerate(prompts):
        with steer(lm, v, layer=2, coef=float(coefs[i]), policy="generated"):
            single = generate(lm, [p], max_new_tokens=8, chat=True, stop=stop, progress=False)[0]
        assert single.token_ids == batched[i].token_ids


def test_logits_rules_force_and_forbid_per_row(tiny_models):
    from steerlab.generation import BannedStart, ForcedPrefix
    from steerlab.generation.rules import compose

    lm = tiny_models("llama")
    tok = lm.tokenizer
    marker = "<tool_call>"
    forced = tok(marker, add_special_tokens=False)["input_ids"]
    kw = dict(max_new_tokens=len(forced) + 3, chat=True, progress=False)
    plain = generate(lm, PROMPTS, **kw)
    out = generate(lm, PROMPTS, logits_rule=ForcedPrefix(lambda i: forced if i != 1 else None), **kw)
    assert out[0].text.startswith(marker) and out[2].text.startswith(marker)
    assert out[1].token_ids == plain[1].token_ids  # a row the rule does not name is untouched
    lt = tok("<", add_special_tokens=False)["input_ids"][0]

    def love_lt(rows, gen, logits):  # a model that wants to open a call
        logits[:, lt] += 1e4
        return logits

    wants = generate(lm, PROMPTS, logits_rule=love_lt, **kw)
    assert all(g.text.startswith("<") for g in wants)
    banned = generate(
        lm, PROMPTS, logits_rule=compose([love_lt, BannedStart(tok, marker, lambda i: i == 0)]), **kw
    )
    assert not marker.startswith(banned[0].text.lstrip()[:1]) and banned[2].text.startswith("<")


def test_one_options_object_equals_the_keyword_arguments(tiny_models):
    """generate and generate_conditions read one GenerateOptions; the old keyword arguments build the same one
    (and go on top of a given object), so both spellings decode the same tokens."""
    from steerlab.generation import GenerateOptions

    lm = tiny_models("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(5)) * 8
    opts = GenerateOptions(max_new_tokens=5, chat=True, system=SYSTEM, progress=False, batch_size=2)
    kw = dict(max_new_tokens=5, chat=True, system=SYSTEM, progress=False, batch_size=2)
    assert [g.token_ids for g in generate(lm, PROMPTS, opts)] == [
        g.token_ids for g in generate(lm, PROMPTS, **kw)
    ]
    short = generate(lm, PROMPTS, opts, max_new_tokens=2)  # a keyword on top of the object wins
    assert all(len(g.token_ids) <= 2 for g in short)
    assert opts.max_new_tokens == 5  # the object is not changed
    conds = {"plain": None, "push": lambda idx: steer(lm, v, layer=1, coef=2.0)}
    by_object, by_kw = (
        generate_conditions(lm, PROMPTS, conds, opts),
        generate_conditions(lm, PROMPTS, conds, **kw),
    )
    for name in conds:
        assert [g.token_ids for g in by_object[name]] == [g.token_ids for g in by_kw[name]], name
    with pytest.raises(TypeError, match=r"unknown generation option\(s\) \['max_tokens'\]"):
        generate(lm, PROMPTS, opts, max_tokens=3)
    with pytest.raises(ValueError, match="does not take temperature, seed"):
        generate_conditions(lm, PROMPTS, conds, opts.replace(temperature=0.7, seed=1))


@pytest.mark.parametrize("family", ["llama", "lfm2"])  # lfm2: the conditions are computed whole
def test_conditions_take_a_logits_rule_and_ignore_eos_like_generate(tiny_models, family):
    from steerlab.generation import BannedStart, GenerateOptions

    lm = tiny_models(family)
    first = generate(lm, PROMPTS, max_new_tokens=1, chat=True, progress=False)
    banned = lm.tokenizer.decode(first[0].token_ids)  # what prompt 0 would start with
    rule = BannedStart(lm.tokenizer, banned, applies=lambda i: i == 0)
    opts = GenerateOptions(max_new_tokens=4, chat=True, progress=False, logits_rule=rule, ignore_eos=True)
    multi = generate_conditions(lm, PROMPTS, {"plain": None}, opts)["plain"]
    ref = generate(lm, PROMPTS, opts)
    assert [g.token_ids for g in multi] == [g.token_ids for g in ref]
    assert all(len(g.token_ids) == 4 for g in multi)
    if banned.strip():  # a visible first token: the rule took it away
        assert multi[0].token_ids[0] != first[0].token_ids[0]
