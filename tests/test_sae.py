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


def _sparse_data(n=6000, d=16, m=128, scale=30.0, seed=0):
    """Inputs built from sparse dictionary codes, and a nonlinear target: a transcoder has something to find."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(m, d, generator=g)
    feats = feats / feats.norm(dim=1, keepdim=True)
    codes = (torch.rand(n, m, generator=g) < 0.04).float() * torch.rand(n, m, generator=g) * 5
    x = codes @ feats + 0.05 * torch.randn(n, d, generator=g)
    y = torch.tanh(x @ torch.randn(d, d, generator=g) * 0.3) * 10
    return x * scale, y


@pytest.mark.parametrize("target", [4.0, 24.0])
def test_target_l0_is_reached_on_the_training_batches(target):
    x, y = _sparse_data()
    t = Transcoder(16, 128, activation="jumprelu", seed=0)
    h = train_transcoder(t, x, y, steps=400, lr=1e-3, sparsity_coef=1e-3, target_l0=target, progress=False)
    l0 = sum(h["l0"][-50:]) / 50
    assert abs(l0 - target) < 0.25 * target, (target, l0)
    assert h["shift"][-1] != 0  # the thresholds were moved by the controller
    _, acts = t(x)  # the L0 holds on the data, not only on the last minibatches
    assert abs(float((acts > 0).float().sum(-1).mean()) - target) < 0.3 * target


def test_without_a_target_only_the_gradient_moves_the_thresholds():
    x, y = _sparse_data(n=2000)
    t = Transcoder(16, 64, activation="jumprelu", seed=0)
    h = train_transcoder(t, x, y, steps=30, sparsity_coef=3e-4, init_l0=8, progress=False)
    assert set(h["shift"]) == {0.0}


def test_target_l0_with_topk_or_out_of_range_is_refused():
    x, y = _sparse_data(n=500)
    with pytest.raises(ValueError, match="topk fixes L0 at k"):
        train_transcoder(
            Transcoder(16, 64, activation="topk", k=4), x, y, steps=1, target_l0=4, progress=False
        )
    with pytest.raises(ValueError, match=r"must be in \(0, d_sae=64\)"):
        train_transcoder(Transcoder(16, 64), x, y, steps=1, target_l0=64, progress=False)


def test_kernel_bandwidth_follows_the_data_scale_per_latent():
    from steerlab.sae.train import init_thresholds

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8000, 4, generator=g).abs() * torch.tensor(
        [1.0, 10.0, 100.0, 0.1]
    )  # one scale per feature
    t = Transcoder(4, 4, activation="jumprelu")
    with torch.no_grad():
        t.W_enc.copy_(torch.eye(4))
    init_thresholds(t, x, l0=1.0)
    eps, theta = t.eps.clone(), t.threshold.detach().clone()
    # each latent reads one feature: threshold and bandwidth scale with that feature
    torch.testing.assert_close(theta / theta[0], torch.tensor([1.0, 10.0, 100.0, 0.1]), rtol=0.05, atol=0)
    torch.testing.assert_close(eps / eps[0], torch.tensor([1.0, 10.0, 100.0, 0.1]), rtol=0.05, atol=0)
    assert bool((eps > 0).all()) and bool((eps <= theta).all())
    init_thresholds(t, x * 7, l0=1.0)  # the whole data 7x larger: 7x wider kernels (float rounding may move a
    torch.testing.assert_close(t.eps, eps * 7, rtol=1e-2, atol=0)  # quantile to the neighbouring sample)
    # about l0 / d_sae of the samples of each latent fire, and the window holds about as many
    assert abs(float((x > theta).float().sum(-1).mean()) - 1.0) < 0.05
    window = ((x - theta).abs() < eps / 2).float().mean(0)
    assert bool(((window > 0.15) & (window < 0.35)).all()), window


def test_per_latent_eps_round_trips_and_bad_eps_is_refused(tmp_path):
    t = Transcoder(8, 16, activation="jumprelu")
    t.eps = torch.linspace(0.1, 1.6, 16)
    back = load_transcoder(save_transcoder(t, tmp_path / "tc"))
    torch.testing.assert_close(back.eps, t.eps)
    with pytest.raises(ValueError, match="16 numbers"):
        t.eps = [0.1, 0.2]
    with pytest.raises(ValueError, match="> 0"):
        t.eps = 0.0


def test_training_from_a_stream_matches_training_from_tensors():
    from steerlab.sae.stream import TensorPairs

    x, y = _sparse_data(n=1000)
    a, b = Transcoder(16, 32, activation="relu", seed=3), Transcoder(16, 32, activation="relu", seed=3)
    ha = train_transcoder(a, x, y, steps=20, progress=False)
    hb = train_transcoder(b, TensorPairs({7: (x, y)}), steps=20, progress=False)
    assert ha["nmse"] == hb["nmse"]
    torch.testing.assert_close(a.W_enc, b.W_enc)


def test_train_transcoders_steps_every_layer_on_the_same_tokens():
    from steerlab.sae.stream import TensorPairs
    from steerlab.sae.train import train_transcoders

    x, y = _sparse_data(n=1000)
    models = {
        3: Transcoder(16, 32, activation="relu", seed=1),
        5: Transcoder(16, 32, activation="relu", seed=1),
    }
    hists = train_transcoders(models, TensorPairs({3: (x, y), 5: (x, y)}), steps=15, progress=False)
    assert hists[3]["nmse"] == hists[5]["nmse"]  # same data, same init, same minibatches
    with pytest.raises(ValueError, match=r"no pairs for layers \[9\]"):
        train_transcoders({9: Transcoder(16, 32)}, TensorPairs({3: (x, y)}), steps=1, progress=False)


@pytest.mark.parametrize("act", ["jumprelu", "topk"])
def test_training_is_scale_free_and_returns_a_model_in_the_data_units(act):
    """Training works in normalised units: scaling the inputs by 50 and the outputs by 0.01 gives the same
    transcoder up to those scales, and its reported NMSE is that of the returned model on the data."""
    x, y = _sparse_data(n=3000, scale=1.0)
    runs = {}
    for cx, cy in ((1.0, 1.0), (50.0, 0.01)):
        t = Transcoder(16, 64, activation=act, k=6, seed=0)
        h = train_transcoder(
            t, x * cx, y * cy, steps=60, init_l0=6, target_l0=6 if act == "jumprelu" else None, progress=False
        )
        runs[cx] = (t, h)
    (a, ha), (b, hb) = runs[1.0], runs[50.0]
    close = (b(x * 50)[0] - a(x)[0] * 0.01).abs().amax(-1) < 1e-4 * float(y.abs().max())
    # float rounding may flip a latent at its threshold on a few tokens (how many depends on the thread count:
    # 2.7% seen with torch's default threads); a scale-dependent training would differ on nearly every token
    assert float(close.float().mean()) > 0.95
    torch.testing.assert_close(torch.tensor(hb["nmse"]), torch.tensor(ha["nmse"]), rtol=1e-3, atol=1e-5)
    out, _ = a(x)
    nmse = float((out - y).pow(2).sum(-1).mean() / y.var(0).sum())
    assert nmse == pytest.approx(sum(ha["nmse"][-10:]) / 10, rel=0.2)
    if act == "jumprelu":  # resume=True continues from the trained function instead of starting afresh
        before = float((a(x)[0] - y).pow(2).sum(-1).mean() / y.var(0).sum())
        h = train_transcoder(a, x, y, steps=1, lr=1e-9, resume=True, progress=False)
        assert h["nmse"][0] == pytest.approx(before, rel=0.2)
