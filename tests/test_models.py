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
