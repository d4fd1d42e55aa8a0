import pytest
import torch

from steerlab.sae import DeltaTranscoder, Transcoder, load_transcoder, safe_arith_eval, save_transcoder
from steerlab.sae.calc_data import make_calc_splits
from steerlab.sae.metrics import call_metrics
from steerlab.sae.train import train_transcoder


@pytest.mark.parametrize("act", ["jumprelu", "topk", "relu"])
def test_shapes_and_gradients(act):
    t = Transcoder(8, 16, 6, activation=act, k=4)
    x = torch.randn(5, 3, 8)
    out, acts = t(x)
    assert out.shape == (5, 3, 6) and acts.shape == (5, 3, 16)
    (out.pow(2).sum() + t.sparsity_loss(x, acts)).backward()
    assert t.W_enc.grad is not None and torch.isfinite(t.W_enc.grad).all()
    if act == "topk":
        assert ((acts != 0).sum(-1) <= 4).all()


def test_jumprelu_threshold_learns_to_cut_a_noise_floor():
    torch.manual_seed(0)
    d = 4
    t = Transcoder(d, d, activation="jumprelu", threshold=0.05, eps=0.1)
    with torch.no_grad():
        t.W_enc.copy_(torch.eye(d))
        t.W_dec.copy_(torch.eye(d))
    x = torch.rand(4000, d) * 0.3  # noise below 0.3 ...
    signal = torch.rand(4000, d) < 0.1
    x = torch.where(signal, 1.0 + torch.rand(4000, d), x)  # ... and sparse signal above 1
    y = torch.where(signal, x, torch.zeros_like(x))  # target keeps only the signal
    before = t.threshold.clone()
    train_transcoder(t, x, y, steps=300, lr=5e-3, sparsity_coef=0.01, progress=False)
    assert (t.threshold > before).all() and (t.threshold > 0.1).all()  # moving up towards the noise floor
    _, acts = t(x)
    assert (acts > 0).float().sum(-1).mean() < 0.8  # ~0.4 true signals per row, noise cut


def test_identity_transcoder_reproduces_input():
    t = Transcoder(6, 6, activation="relu")
    with torch.no_grad():
        t.W_enc.copy_(torch.eye(6))
        t.W_dec.copy_(torch.eye(6))
    x = torch.rand(10, 6)
    assert torch.allclose(t(x)[0], x)


def test_delta_scale_zero_is_exactly_base_and_only_delta_trains():
    base = Transcoder(8, 16, activation="jumprelu")
    delta = DeltaTranscoder(base, 4)
    x = torch.randn(7, 8)
    assert torch.equal(delta(x, scale=0.0)[0], base(x)[0])
    w_before = base.W_enc.clone()
    train_transcoder(delta, x, torch.randn(7, 8), steps=5, progress=False)
    assert torch.equal(base.W_enc, w_before) and delta.delta.W_enc.grad is not None


def test_save_load_round_trip(tmp_path):
    base = Transcoder(8, 16, activation="topk", k=3)
    path = save_transcoder(base, tmp_path / "tc")
    back = load_transcoder(path)
    x = torch.randn(4, 8)
    torch.testing.assert_close(back(x)[0], base(x)[0])
    d = DeltaTranscoder(base, 2)
    back_d = load_transcoder(save_transcoder(d, tmp_path / "delta"))
    torch.testing.assert_close(back_d(x, 0.5)[0], d(x, 0.5)[0])


def test_safe_eval():
    assert safe_arith_eval("347 * 29") == 10063
    assert safe_arith_eval("-(2 + 3) ** 2 / 5") == -5.0
    assert safe_arith_eval("1,234 × 2") == 2468
    for bad in (
        "__import__('os').system('x')",
        "x + 1",
        "abs(-3)",
        "10**10**10",
        "'a' * 3",
        "1 / 0",
        "(1).real",
        "9 ** 99 ** 99",  # nested powers: refused at once, not computed for minutes
        "(9 ** 99) ** 99",
        "(10 ** 99) * (10 ** 99) * (10 ** 99) * (10 ** 99)",
        "1e308 * 10",
        "(-8) ** 0.5",
        "0 ** -1",
    ):
        with pytest.raises(ValueError):
            safe_arith_eval(bad)
    assert safe_arith_eval("2 ** 100") == 2.0**100


def test_calc_data_disjoint_and_metrics():
    d = make_calc_splits(n_train=300, n_eval_per_subset=200, seed=1)
    train = {x["prompt"] for x in d["train"]}
    for k in ("eval_tool", "eval_copy", "eval_ood"):
        assert len(d[k]) == 200 and not train & {x["prompt"] for x in d[k]}
    tool = d["eval_tool"][0]
    m = call_metrics(
        [tool["completion"], "no call", "<tool_call>calculator(2 +)</tool_call>"], [tool["answer"], None, 3.0]
    )
    assert m["tool_call_rate"][0] == pytest.approx(2 / 3) and m["valid_tool_format_rate"][0] == pytest.approx(
        1 / 3
    )
    assert m["math_correct_rate"][0] == pytest.approx(1 / 3)


def test_splice_identity_transcoder_keeps_ce_and_scale_zero_equals_base(tiny_models):
    from steerlab.sae.scoring import cross_entropy
    from steerlab.sae.splice import TranscoderSplice, mlp_pairs

    lm = tiny_models("llama")
    texts = ["hello there, how are you?", "What is 12 times 7?", "Repeat exactly: Room 12 is on floor 3."]
    x, y = mlp_pairs(lm, texts, layer=1, progress=False)
    assert (
        x.shape == y.shape and x.shape[0] == sum(len(t) for t in texts) - 3
    )  # every char token but the first
    plain = cross_entropy(lm, texts)

    class Exact(Transcoder):  # replaces the MLP by itself: a perfect transcoder
        def forward(self, inp):
            mlp = lm.model.model.layers[
                1
            ].mlp  # its submodules, not mlp() itself, so the splice hook is not re-entered
            return mlp.down_proj(mlp.act_fn(mlp.gate_proj(inp)) * mlp.up_proj(inp)), inp

    with TranscoderSplice(lm, 1, Exact(32, 4)):
        same = cross_entropy(lm, texts)
    torch.testing.assert_close(same, plain, atol=1e-4, rtol=1e-4)
    base = Transcoder(32, 64)
    d = DeltaTranscoder(base, 4)
    with TranscoderSplice(lm, 1, base):
        ce_base = cross_entropy(lm, texts)
    with TranscoderSplice(lm, 1, d, scale=0.0):
        ce_zero = cross_entropy(lm, texts)
    assert torch.equal(ce_base, ce_zero) and not torch.allclose(ce_base, plain)


def test_tail_mean_averages_only_the_steps_that_ran():
    from steerlab.sae.train import tail_mean

    assert tail_mean({"nmse": [4.0, 1.0, 2.0, 3.0]}, "nmse", n=3) == 2.0
    assert tail_mean({"l0": [2.0, 4.0]}, "l0") == 3.0  # 2 steps: divide by 2, not by 50
    with pytest.raises(ValueError, match="'l0'"):
        tail_mean({"l0": []}, "l0")
