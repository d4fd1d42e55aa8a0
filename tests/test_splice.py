import torch

from steerlab.generation import generate
from steerlab.steering import splice

PROMPTS = ["hello there, how are you today?", "hi", "what is 12 times 7?"]


def test_identity_splice_leaves_generation_unchanged(tiny_models):
    lm = tiny_models("llama")
    plain = generate(lm, PROMPTS, max_new_tokens=5, chat=True, progress=False)
    with splice(lm, 1, lambda inp, out, valid: out.clone()):
        same = generate(lm, PROMPTS, max_new_tokens=5, chat=True, progress=False)
    assert [g.token_ids for g in plain] == [g.token_ids for g in same]


def test_splice_sees_mlp_input_and_skips_bos(tiny_models):
    lm = tiny_models("gemma2")
    seen = {}

    def fn(inp, out, valid):
        seen.setdefault("valid", []).append(valid.clone())
        seen["shapes"] = (inp.shape, out.shape)
        return torch.zeros_like(out)

    with splice(lm, 2, fn):
        generate(lm, ["abc"], max_new_tokens=2, progress=False, shared_prefix=False)
    first = seen["valid"][0]
    assert not first[0, 0] and first[0, 1:].all()  # position 0 (BOS) untouched, the rest spliced
    assert seen["valid"][1].all()  # decode steps: every position spliced
    assert seen["shapes"][0][-1] == 32 and seen["shapes"][1][-1] == 32
