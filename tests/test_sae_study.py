"""The tool-use transcoder study: LoRA finetune, scoring under splices, the staged pipeline and its CLI."""

import json

import pytest
import torch

from steerlab.models import load_model, tiny_model
from steerlab.sae import DeltaTranscoder, Transcoder
from steerlab.sae.calc_data import make_calc_splits
from steerlab.sae.config import ToolUseConfig
from steerlab.sae.train import init_thresholds, train_transcoder

pytest.importorskip("peft")


def _rows(n=8, seed=0):
    d = make_calc_splits(n_train=n, n_eval_per_subset=4, seed=seed)
    return d["train"]


def test_init_thresholds_sets_starting_l0_at_real_scale():
    torch.manual_seed(0)
    x = torch.randn(3000, 16) * 40  # activations far above a fixed 0.01 threshold
    t = Transcoder(16, 64, activation="jumprelu")
    _, acts = t(x)
    assert (acts > 0).sum(-1).float().mean() > 25  # fixed small threshold: about half the latents fire
    init_thresholds(t, x, l0=4)
    _, acts = t(x)
    assert abs((acts > 0).sum(-1).float().mean() - 4) < 1.0
    theta = t.threshold.detach()
    assert t.eps.shape == (64,) and bool((t.eps > 0.01 * theta).all()) and bool((t.eps <= theta).all())
    with pytest.raises(ValueError, match="init_l0"):
        init_thresholds(t, x, l0=64)


def test_jumprelu_sparsity_penalty_lowers_l0_at_real_scale():
    torch.manual_seed(0)
    x = torch.randn(4000, 16) * 30  # far above the usual fixed 0.001-0.01 starting thresholds
    y = x @ torch.randn(16, 16) * 0.1
    l0, nmse = {}, {}
    for coef in (0.0, 0.05):
        t = Transcoder(16, 64, activation="jumprelu", seed=0)
        h = train_transcoder(t, x, y, steps=300, lr=3e-3, sparsity_coef=coef, init_l0=16, progress=False)
        l0[coef], nmse[coef] = sum(h["l0"][-20:]) / 20, sum(h["nmse"][-20:]) / 20
    assert nmse[0.0] < 0.05 and nmse[0.05] < 0.1  # latents stay alive and reconstruct
    assert l0[0.05] < 0.85 * l0[0.0]  # and the L0 penalty moves the thresholds


def test_completion_ids_and_ce_mask_the_prompt(tiny_models):
    from steerlab.models import left_pad, position_ids_from_mask
    from steerlab.sae.finetune import completion_ids
    from steerlab.sae.scoring import completion_ce

    lm = tiny_models("llama")
    rows = _rows(4)
    pairs = completion_ids(lm, rows)
    for (p, c), r in zip(pairs, rows):
        assert lm.tokenizer.decode(c) == r["completion"] + "<|im_end|>"
        assert lm.tokenizer.decode(p).endswith("<|im_start|>assistant\n")
    ce = completion_ce(lm, rows, batch_size=3)
    p, c = pairs[1]
    ids, mask = left_pad([p + c], lm.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = lm.model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
        ).logits
    logp = torch.log_softmax(logits[0, :-1], -1)
    manual = -logp[torch.arange(len(p) - 1, len(p) + len(c) - 1), torch.tensor(c)].mean()
    torch.testing.assert_close(ce[1], manual, atol=1e-4, rtol=1e-4)


def test_lora_finetune_changes_only_the_targeted_mlp_and_lowers_loss(tmp_path):
    from steerlab.sae.finetune import lora_finetune, save_model_dir
    from steerlab.sae.scoring import completion_ce

    lm = tiny_model("llama", n_layers=3)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    fp_before = lm.fingerprint
    rows = _rows(32)
    ce0 = completion_ce(lm, rows).mean()
    hist = lora_finetune(lm, rows, targets="mlp", layers=[1], epochs=4, batch_size=8, lr=1e-2, progress=False)
    after = lm.model.state_dict()
    assert set(after) == set(before)  # merged: no lora_A/lora_B left behind
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("model.layers.1.mlp.") for k in changed), changed
    assert completion_ce(lm, rows).mean() < ce0 and hist["loss"][-1] < hist["loss"][0]
    assert lm.fingerprint != fp_before  # caches and assets of the base model no longer match it
    path = save_model_dir(lm, tmp_path / "ft")
    back = load_model(str(path))
    assert back.fingerprint == lm.fingerprint
    torch.testing.assert_close(completion_ce(back, rows), completion_ce(lm, rows))
    with pytest.raises(ValueError, match="unknown LoRA targets"):
        lora_finetune(lm, rows, targets="everything")


def test_splice_scale_zero_and_full_mask_equal_base(tiny_models):
    from steerlab.sae.scoring import completion_ce
    from steerlab.sae.splice import TranscoderSplice

    lm = tiny_models("llama")
    rows = _rows(6)
    base = Transcoder(32, 64, activation="topk", k=8)
    d = DeltaTranscoder(base, 8)
    with torch.no_grad():
        d.delta.W_dec.mul_(50)  # make the delta matter
    with TranscoderSplice(lm, 1, base) as rec:
        ce_base = completion_ce(lm, rows)
    assert rec.stats()["mean_abs_base_acts"] > 0 and rec.stats()["delta_l0"] == 0
    with TranscoderSplice(lm, 1, d, scale=0.0):
        ce_zero = completion_ce(lm, rows)
    with TranscoderSplice(lm, 1, d, scale=1.0, delta_mask=torch.zeros(8)):
        ce_masked = completion_ce(lm, rows)
    with TranscoderSplice(lm, 1, d, scale=1.0):
        ce_full = completion_ce(lm, rows)
    torch.testing.assert_close(ce_zero, ce_base)
    torch.testing.assert_close(ce_masked, ce_base)
    assert not torch.allclose(ce_full, ce_base)
    plain = completion_ce(lm, rows)
    assert not torch.allclose(plain, ce_base)
    torch.testing.assert_close(completion_ce(lm, rows), plain)  # handles removed: the plain model is back


def test_config_validation():
    with pytest.raises(ValueError, match="lora_targets"):
        ToolUseConfig(lora_targets="bogus")
    with pytest.raises(ValueError, match="delta_scales must include 0.0"):
        ToolUseConfig(delta_scales=[1.0])
    with pytest.raises(ValueError, match="topk fixes L0 at k"):
        ToolUseConfig(activation="topk", target_l0=32)
    with pytest.raises(ValueError, match="delta_target_l0 must satisfy"):
        ToolUseConfig(d_new=16, delta_target_l0=16)
    with pytest.raises(ValueError, match="layer=15 must be one of splice_layers"):
        ToolUseConfig(splice_layers=[9, 21])
    with pytest.raises(ValueError, match="lora_layers must be a list of layers, all or null"):
        ToolUseConfig.from_dict({"lora_layers": "some"})
    assert ToolUseConfig.from_dict({"lora_layers": "all"}).lora_layers is None
    assert ToolUseConfig.from_dict({"top_latents": 4}).search_pool == 4  # the old name still works
    with pytest.raises(ValueError, match="did you mean 'layer'"):
        ToolUseConfig.from_dict({"layers": 3})
    # ``alphas`` means one thing only (ASA's strengths): here it is refused, naming the field to use
    with pytest.raises(
        ValueError, match="'alphas' is retired: the scales of the delta latents are delta_scales"
    ):
        ToolUseConfig.from_dict({"alphas": [0.0, 1.0, 2.0]})


def test_study_pipeline_end_to_end_on_a_tiny_model(tmp_path, capsys):
    from steerlab.cli import main
    from steerlab.sae.finetune import save_model_dir

    model_dir = save_model_dir(tiny_model("llama", n_layers=3), tmp_path / "tiny")
    out = tmp_path / "run"
    args = [
        "sae",
        "run",
        "--quick",
        "-q",
        "--out",
        str(out),
        "--model",
        str(model_dir),
        "--layer",
        "1",
        "--n-eval",
        "6",
        "--n-general",
        "10",
        "--d-sae",
        "64",
        "--d-new",
        "8",
        "--steps",
        "20",
        "--delta-steps",
        "20",
        "--max-new-tokens",
        "6",
        "--lora-examples",
        "32",
        "--k",
        "8",
        "--init-l0",
        "8",
        "--delta-target-l0",
        "2",
        "--search-pool",
        "2",
        "--search-prompts",
        "4",
    ]
    assert main(args) == 0
    params = json.loads((out / "finetune" / "_DONE.json").read_text())["params"]["fields"]
    assert params["lora_layers"] == [1]  # the finetune follows the splice layer
    ev = json.loads((out / "evaluate" / "result.json").read_text())
    conds = ev["conditions"]
    assert set(conds) == {
        "finetuned (no splice)",
        "base only (scale=0)",
        "base + 1*delta",
        "base + 1*control delta",
    }
    for c in conds.values():
        assert set(c["subsets"]) == {"tool", "ood", "copy"}
        assert 0 <= c["subsets"]["tool"]["tool_call_rate"][0] <= 1
    assert conds["base only (scale=0)"]["subsets"]["tool"]["delta_l0"] == 0
    # the unspliced finetuned model is not generated again: its replies are the finetune stage's
    ft_replies = [json.loads(x)["finetuned"] for x in (out / "finetune" / "generations.jsonl").open()]
    ev_replies = [
        json.loads(x)["finetuned (no splice)"] for x in (out / "evaluate" / "generations.jsonl").open()
    ]
    assert ev_replies == ft_replies
    ft_after = json.loads((out / "finetune" / "result.json").read_text())["after"]
    for s in ("tool", "ood", "copy"):
        for k, v in ft_after[s].items():
            assert conds["finetuned (no splice)"]["subsets"][s][k] == v
    at = json.loads((out / "attribute" / "result.json").read_text())
    assert len(at["per_latent"]) == 8 and 1 <= len(at["specific_set"]) <= len(at["pool"]) <= 2
    assert all(0 <= p["auc_tool_vs_copy"] <= 1 for p in at["per_latent"])
    assert set(at["heldout"]) == {"full delta", "only the set kept", "the set ablated"}
    summary = json.loads((out / "report" / "delta_summary.json").read_text())
    assert summary["specific_set"] == at["specific_set"] and summary["d_new"] == 8
    assert set(summary["tool_call_rate"]["finetuned"]) == {"tool", "ood", "copy"}
    report = (out / "report" / "report.md").read_text()
    assert "base only (scale=0)" in report and (out / "report" / "latents.png").is_file()
    done = {s: (out / s / "_DONE.json").stat().st_mtime_ns for s in ("finetune", "base", "delta", "evaluate")}
    assert main(args) == 0  # resumed: finished stages are skipped
    assert done == {s: (out / s / "_DONE.json").stat().st_mtime_ns for s in done}
    # a new LoRA rank retrains the finetune and everything trained on the finetuned model, but not the base
    assert main([*args, "--lora-rank", "4"]) == 0
    again = {s: (out / s / "_DONE.json").stat().st_mtime_ns for s in done}
    assert [s for s in done if again[s] != done[s]] == ["finetune", "delta", "evaluate"]
    assert main(["sae", "run", "--out", str(out), "--layer", "one"]) == 2


def _texts(n=12):
    d = make_calc_splits(n_train=n, n_eval_per_subset=1, seed=2)["train"]
    return [
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
        for r in d
    ]


def _rows_of(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Index in ``ref`` of each row of ``x``: every row must be there, up to the float noise of another batching
    (~1e-3 here; tokens in the same context, such as the shared system prompt, give identical rows)."""
    dist = torch.cdist(x, ref)
    assert float(dist.min(1).values.max()) < 0.02
    return dist.argmin(1)


def test_captured_pairs_resident_holds_exactly_the_corpus(tiny_models):
    from steerlab.sae.splice import mlp_pairs_at
    from steerlab.sae.stream import CapturedPairs

    lm = tiny_models("llama")
    texts = _texts()
    full = mlp_pairs_at(lm, texts, [0, 1], progress=False)
    src = CapturedPairs(lm, texts, [0, 1], buffer_tokens=10**6, chunk=5)
    assert src.resident and src.n == full[0][0].shape[0] and src.tokens_captured == src.n
    for k in (0, 1):  # the same tokens, in another order
        idx = _rows_of(src.buf[k][0], full[k][0])
        torch.testing.assert_close(
            src.buf[k][0].sum(0), full[k][0].sum(0), atol=0.5, rtol=1e-3
        )  # all of them
        torch.testing.assert_close(src.buf[k][1], full[k][1][idx], atol=0.02, rtol=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        src.sample(64, g)
    assert src.tokens_captured == src.n  # resident: never captured again


def test_captured_pairs_stream_in_a_small_buffer(tiny_models):
    from steerlab.sae.splice import mlp_pairs_at
    from steerlab.sae.stream import CapturedPairs

    lm = tiny_models("llama")
    texts = _texts()
    full = mlp_pairs_at(lm, texts, [0, 1], progress=False)
    total = full[0][0].shape[0]
    src = CapturedPairs(lm, texts, [0, 1], buffer_tokens=total // 4, chunk=2, seed=1)
    assert not src.resident and src.n == total // 4
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        batch = src.sample(32, g)
        i0 = _rows_of(batch[0][0], full[0][0])  # every row is a real pair ...
        i1 = _rows_of(batch[1][0], full[1][0])
        assert torch.equal(i0, i1)  # ... of the same token at both layers
        torch.testing.assert_close(batch[1][1], full[1][1][i1], atol=0.02, rtol=0)
        seen.update(i0.tolist())
        assert src.buf[0][0].shape[0] == total // 4  # memory stays bounded
    assert src.tokens_captured > total and src.epoch >= 1  # the corpus came round again
    assert len(seen) > total // 2  # and the buffer moved through it
    assert src.describe()["mode"] == "streamed"
    with pytest.raises(ValueError, match="buffer_tokens"):
        CapturedPairs(lm, texts, [0], buffer_tokens=1)


def test_multi_layer_splice_conditions_on_a_tiny_model(tmp_path):
    """LoRA on every layer (attention + MLP), transcoders at three layers: each layer's delta alone, all together,
    and the share of the finetuned behaviour each restores."""
    from steerlab.cli import main
    from steerlab.sae.finetune import save_model_dir

    model_dir = save_model_dir(tiny_model("llama", n_layers=3), tmp_path / "tiny")
    out = tmp_path / "run"
    args = ["sae", "evaluate", "--quick", "-q", "--out", str(out), "--model", str(model_dir)]
    args += ["--layer", "1", "--splice-layers", "0,1,2", "--lora-layers", "all", "--lora-targets", "all"]
    args += ["--n-eval", "4", "--n-general", "6", "--d-sae", "32", "--d-new", "4", "--steps", "5"]
    args += ["--delta-steps", "5", "--max-new-tokens", "4", "--lora-examples", "16", "--k", "4"]
    args += ["--delta-target-l0", "1"]
    assert main(args) == 0
    done = json.loads((out / "finetune" / "_DONE.json").read_text())["params"]["fields"]
    assert done["lora_layers"] is None and done["lora_targets"] == "all"
    ev = json.loads((out / "evaluate" / "result.json").read_text())
    assert ev["layers"] == [0, 1, 2]
    conds = ev["conditions"]
    for k in (0, 1, 2):
        assert conds[f"base + 1*delta at layer {k} only"]["delta_layers"] == [k]
    assert conds["base + 1*delta"]["delta_layers"] == [0, 1, 2]
    base = json.loads((out / "base" / "result.json").read_text())
    assert set(base["layers"]) == {"0", "1", "2"} and base["all_layers_together"] is not None
    for name, c in conds.items():
        for s in ("tool", "ood"):
            f = c["restored"][s]["completion_ce"]
            if name == "finetuned (no splice)":
                assert f == pytest.approx(1.0)
            elif name == "base only (scale=0)":
                assert f == pytest.approx(0.0)
        assert (
            set(c["subsets"]["tool"]["per_layer"]) == {"0", "1", "2"} if c["transcoder"] != "none" else True
        )


def test_restored_share():
    from steerlab.sae.stages import restored

    assert restored(0.5, 0.0, 1.0) == 0.5
    assert restored(2.0, 3.0, 1.0) == 0.5  # CE: lower is better, the same formula
    assert restored(0.3, 0.2, 0.2) is None


def test_sparsity_sweep_resumes_per_target_and_lands_near_each_target(tmp_path):
    from steerlab.cli import main
    from steerlab.sae.finetune import save_model_dir

    model_dir = save_model_dir(tiny_model("llama", n_layers=3), tmp_path / "tiny")
    out = tmp_path / "sweep"
    base = ["sae", "sparsity-sweep", "-q", "--out", str(out), "--model", str(model_dir), "--layer", "1"]
    base += ["--d-sae", "64", "--steps", "150", "--batch-size", "128", "--n-train", "40", "--n-eval", "8"]
    assert main([*base, "--targets", "4,12"]) == 0
    rows = {r["target_l0"]: r for r in json.loads((out / "report" / "result.json").read_text())["rows"]}
    for t in (4.0, 12.0):
        assert abs(rows[t]["l0_train"] - t) < 0.25 * t, rows[t]
        assert rows[t]["l0_heldout"] > 0 and 0 < rows[t]["train_nmse"]
    assert rows[4.0]["train_nmse"] > rows[12.0]["train_nmse"]  # fewer latents, worse reconstruction
    assert (out / "report" / "pareto.png").is_file()
    done = {n: (out / n / "_DONE.json").stat().st_mtime_ns for n in ("pairs", "target_4", "target_12")}
    assert main([*base, "--targets", "4,12,24"]) == 0  # a new target computes only that one
    assert done == {n: (out / n / "_DONE.json").stat().st_mtime_ns for n in done}
    assert (out / "target_24" / "_DONE.json").is_file()
    assert main([*base, "--targets", "4,64"]) == 2  # out of range: a clear error, exit code 2
