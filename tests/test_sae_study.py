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
    assert t.eps == pytest.approx(float(t.threshold.detach().median()) * 0.1)
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
    assert l0[0.05] < 0.7 * l0[0.0]  # and the L0 penalty moves the thresholds


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
    with pytest.raises(ValueError, match="did you mean 'layer'"):
        ToolUseConfig.from_dict({"layers": 3})
    assert ToolUseConfig.from_dict({"alphas": [0.0, 2.0]}).delta_scales == [0.0, 2.0]  # the old name works


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
        "--delta-init-l0",
        "2",
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
    at = json.loads((out / "attribute" / "result.json").read_text())
    assert len(at["top_latents"]) == 2 and len(at["per_latent"]) == 8
    report = (out / "report" / "report.md").read_text()
    assert "base only (scale=0)" in report and (out / "report" / "delta_scale_sweep.png").is_file()
    done = {s: (out / s / "_DONE.json").stat().st_mtime_ns for s in ("finetune", "base", "delta", "evaluate")}
    assert main(args) == 0  # resumed: finished stages are skipped
    assert done == {s: (out / s / "_DONE.json").stat().st_mtime_ns for s in done}
    # a new LoRA rank retrains the finetune and everything trained on the finetuned model, but not the base
    assert main([*args, "--lora-rank", "4"]) == 0
    again = {s: (out / s / "_DONE.json").stat().st_mtime_ns for s in done}
    assert [s for s in done if again[s] != done[s]] == ["finetune", "delta", "evaluate"]
    assert main(["sae", "run", "--out", str(out), "--layer", "one"]) == 2
