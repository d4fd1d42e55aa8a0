import pytest
import torch

from steerlab.capture import capture, live_states, mean_norm

PROMPTS = [
    "hello there, how are you today?",
    "hi",
    "what is the weather like in Paris right now, please?",
    "12 times 7",
]


def _hf_hidden(lm, prompt):
    ids = lm.tokenizer(prompt, return_tensors="pt").to(lm.device)
    with torch.no_grad():
        return lm.model(**ids, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma2", "gpt2", "lfm2"])
def test_block_equals_hf_hidden_states(tiny_models, family):
    lm = tiny_models(family)
    acts = capture(lm, PROMPTS, layers=[0, 1, 2], positions="all", progress=False)
    for i, p in enumerate(PROMPTS):
        hs = _hf_hidden(lm, p)
        for k in (0, 1, 2):  # layer k = hidden_states[k + 1] (the last layer's HF state is post final norm)
            torch.testing.assert_close(acts[(k, "block")][i], hs[k + 1][0].cpu(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gemma3", "gpt2", "lfm2"])
def test_batched_equals_one_at_a_time(tiny_models, family):
    lm = tiny_models(family)
    sites = ["block", "block_in", "attn", "mlp", "mlp_in"]
    batched = capture(lm, PROMPTS, layers=[1, 3], sites=sites, batch_size=4, progress=False)
    for i, p in enumerate(PROMPTS):
        single = capture(lm, [p], layers=[1, 3], sites=sites, batch_size=1, progress=False)
        for key in batched.keys():
            torch.testing.assert_close(batched[key][i], single[key][0], atol=1e-5, rtol=1e-4)


def test_positions_and_chat(tiny_models):
    lm = tiny_models("llama")
    allp = capture(lm, PROMPTS, layers=2, positions="all", progress=False)
    last = capture(lm, PROMPTS, layers=2, positions="last", progress=False)
    idx = capture(lm, PROMPTS, layers=2, positions=[0, -1], progress=False)
    for i in range(len(PROMPTS)):
        torch.testing.assert_close(last[2][i], allp[2][i][-1])
        torch.testing.assert_close(idx[2][i, 0], allp[2][i][0])
    chat = capture(lm, [[{"role": "user", "content": "hi"}]], layers=0, progress=False)
    assert chat[0].shape == (1, 32)
    assert mean_norm(last[2]) > 0


def test_block_in_is_previous_block(tiny_models):
    lm = tiny_models("qwen2")
    acts = capture(lm, PROMPTS, layers=[1, 2], sites=["block", "block_in"], progress=False)
    torch.testing.assert_close(acts[(2, "block_in")], acts[(1, "block")])


def test_early_exit_skips_deeper_layers(tiny_models):
    lm = tiny_models("llama")
    seen = []
    h = lm.model.model.layers[3].register_forward_hook(lambda *a: seen.append(3))
    try:
        capture(lm, PROMPTS, layers=[1], progress=False)
    finally:
        h.remove()
    assert seen == []


def test_cache_round_trip(tiny_models, tmp_path):
    lm = tiny_models("llama")
    a = capture(lm, PROMPTS, layers=[0, 2], sites=["block", "mlp"], cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    b = capture(lm, PROMPTS, layers=[0, 2], sites=["block", "mlp"], cache_dir=tmp_path, progress=False)
    for key in a.keys():
        assert torch.equal(a[key], b[key])
    c = capture(lm, PROMPTS[:2], layers=[0, 2], sites=["block", "mlp"], cache_dir=tmp_path, progress=False)
    assert c[(0, "block")].shape[0] == 2 and len(list(tmp_path.glob("*.safetensors"))) == 2


def test_capture_bad_input(tiny_models):
    lm = tiny_models("llama")
    with pytest.raises(ValueError, match="prompt list is empty"):
        capture(lm, [], layers=0)
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        capture(lm, ["a"], layers=9)
    with pytest.raises(ValueError, match="unknown site 'resid'"):
        capture(lm, ["a"], layers=0, sites="resid")
    with pytest.raises(ValueError, match="positions must be"):
        capture(lm, ["a"], layers=0, positions="first")


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_shared_prefix_equals_full_prompts(tiny_models, family):
    lm = tiny_models(family)
    system = "You are a careful assistant. Use tools when needed. " * 2
    chats = [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in PROMPTS]
    fast = capture(lm, chats, layers=[0, 2], sites=["block", "mlp_in"], positions=[-2, -1], progress=False)
    slow = capture(
        lm,
        chats,
        layers=[0, 2],
        sites=["block", "mlp_in"],
        positions=[-2, -1],
        progress=False,
        shared_prefix=False,
    )
    for key in fast.keys():
        torch.testing.assert_close(fast[key], slow[key], atol=1e-5, rtol=1e-4)


def test_live_states_are_the_forwards_states_and_carry_gradients(tiny_models):
    """live_states holds what the forward computed at each layer (= HF hidden_states[k + 1]), differentiable: the
    gradient of a function of the last layer read through it equals the one autograd gives through HF's own states;
    its hooks are gone after the block."""
    lm = tiny_models("llama")
    ids = lm.tokenizer(PROMPTS[0], return_tensors="pt").to(lm.device)
    with live_states(lm, [0, 2]) as states, torch.enable_grad():
        out = lm.model(**ids, output_hidden_states=True)
        assert sorted(states) == [0, 2]
        for k in (0, 2):
            assert torch.equal(states[k], out.hidden_states[k + 1])
        loss = out.logits[0, -1].logsumexp(-1)
        (ours,) = torch.autograd.grad(loss, [states[2]], retain_graph=True)
        (theirs,) = torch.autograd.grad(loss, [out.hidden_states[3]])
    torch.testing.assert_close(ours, theirs)
    assert ours.abs().sum() > 0
    states.clear()
    with torch.no_grad():
        lm.model(**ids)
    assert states == {}  # no hook left behind
    with pytest.raises(ValueError, match="out of range"):
        with live_states(lm, [99]):
            pass
