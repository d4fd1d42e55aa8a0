"""llama.cpp control vectors: export/import round trips, the file layout llama.cpp reads, the layer mapping, errors.

The mapping, from llama.cpp's source (common/common.cpp ``common_control_vector_load_one``, src/llama-adapter.cpp,
src/models/llama.cpp): ``direction.N`` is added to the output of decoder block N (0-based), which is steerlab layer
N and HF ``hidden_states[N+1]``; ``direction.0`` is refused. ``test_llamacpp.py`` (opt-in) checks it against
llama.cpp itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from steerlab.assets import load_asset, save_asset
from steerlab.assets.gguf_cvec import (
    ControlVectorError,
    export_control_vector,
    import_control_vector,
    llamacpp_buffer,
    read_control_vector,
    write_control_vector,
)
from steerlab.assets.vector_asset import SteeringVectorAsset, load_vector_asset, save_vector_asset
from steerlab.cli import main

gguf = pytest.importorskip("gguf")


def _vec(d: int, seed: int) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


def _raw_gguf(path, arch="controlvector", tensors=None, dtype=np.float32):
    """A file written with gguf-py directly, the way llama.cpp's cvector-generator lays it out."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_string(f"{arch}.model_hint", "llama")
    w.add_int32(f"{arch}.layer_count", len(tensors or {}))
    for name, arr in (tensors or {}).items():
        w.add_tensor(name, arr.astype(dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_export_writes_the_layout_llamacpp_reads(tmp_path):
    asset = SteeringVectorAsset({3: _vec(16, 0), 5: _vec(16, 1)}, coef=2.5, model="m", n_layers=8)
    save_vector_asset(tmp_path / "a", asset)
    export_control_vector(tmp_path / "a", tmp_path / "cv.gguf")
    r = gguf.GGUFReader(str(tmp_path / "cv.gguf"))
    arch = r.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "controlvector"
    lc = r.fields["controlvector.layer_count"]
    assert int(lc.parts[lc.data[0]][0]) == 2
    assert "controlvector.model_hint" in r.fields
    by_name = {t.name: t for t in r.tensors}
    assert sorted(by_name) == ["direction.3", "direction.5"]
    for layer, seed in ((3, 0), (5, 1)):
        t = by_name[f"direction.{layer}"]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert np.array_equal(np.asarray(t.data), (2.5 * _vec(16, seed)).numpy())  # coef folded in, exactly


def test_round_trip_keeps_layers_and_values(tmp_path):
    asset = SteeringVectorAsset({1: _vec(24, 3), 7: _vec(24, 4)}, coef=0.75, model="m", n_layers=8)
    save_vector_asset(tmp_path / "a", asset)
    export_control_vector(tmp_path / "a", tmp_path / "cv.gguf")
    back = import_control_vector(tmp_path / "cv.gguf", tmp_path / "b", hidden_size=24, n_layers=8)
    again = load_vector_asset(tmp_path / "b")
    for got in (back, again):
        assert got.layers == [1, 7] and got.policy == "all" and got.site == "block" and got.coef == 1.0
        for k in (1, 7):
            assert torch.equal(got.effective(k), asset.effective(k))
    assert again.model == "m"
    assert "every position" in again.info["applied_by_llamacpp"]


def test_imports_a_cvector_generator_style_file(tmp_path):
    d = {f"direction.{k}": _vec(8, k).numpy() for k in range(1, 4)}  # cvector-generator: 1..n_layers-1
    _raw_gguf(tmp_path / "g.gguf", tensors=d)
    cv = read_control_vector(tmp_path / "g.gguf")
    assert sorted(cv.directions) == [1, 2, 3] and cv.model_hint == "llama" and cv.layer_count == 3
    assert torch.equal(cv.directions[2], _vec(8, 2))


def test_llamacpp_buffer_packs_like_its_loader():
    """Layer N's direction sits at offset (N-1)*n_embd, times the strength; blocks past the model are dropped."""
    from steerlab.assets.gguf_cvec import ControlVector

    cv = ControlVector(
        {1: torch.tensor([1.0, 2.0]), 3: torch.tensor([3.0, 4.0]), 9: torch.tensor([5.0, 6.0])}
    )
    buf = llamacpp_buffer(cv, n_layer=4, strength=0.5)
    assert buf.tolist() == [0.5, 1.0, 0.0, 0.0, 1.5, 2.0]


def test_direction_k_lands_on_hf_hidden_states_k_plus_1(tiny_models, tmp_path):
    """The mapping llama.cpp's source gives: direction.k is added to block k's output = HF hidden_states[k+1]."""
    lm = tiny_models("llama")
    k = 2
    v = _vec(lm.hidden_size, 5)
    write_control_vector(tmp_path / "cv.gguf", {k: v}, "llama")
    asset = import_control_vector(tmp_path / "cv.gguf", hidden_size=lm.hidden_size, n_layers=lm.n_layers)
    ids = torch.tensor([[5, 6, 7, 8, 9]], device=lm.device)
    layers = lm.arch.layers(lm.model)
    seen: dict[int, torch.Tensor] = {}
    hooks = [
        layers[i].register_forward_pre_hook(
            lambda _m, a, kw, i=i: seen.__setitem__(i, (a[0] if a else kw["hidden_states"]).detach().clone()),
            with_kwargs=True,
        )
        for i in (k, k + 1)
    ]
    try:
        with torch.no_grad():
            hf = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
            plain = dict(seen)
            with asset.apply(lm):
                lm.model(input_ids=ids)
            steered = dict(seen)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(
        plain[k + 1], hf[k + 1]
    )  # block k's output = input of block k+1 = HF hidden_states[k+1]
    assert torch.equal(steered[k], plain[k])  # block k's input untouched
    diff = (steered[k + 1] - plain[k + 1]).cpu()
    assert torch.allclose(diff, v.expand_as(diff), atol=1e-5)  # every position, exactly the direction


def _asa_manifest(d: int, **kw) -> dict:
    return {
        "kind": "asa",
        "layer": 4,
        "site": "block",
        "strength": 0.5,
        "mean_norm": 10.0,
        "beta": 0.5,
        "domains": ["a", "b"],
        "model": "m",
        "hidden_size": d,
        "n_layers": 6,
        **kw,
    }


def test_asa_asset_exports_the_direction_its_manifest_names(tmp_path):
    d = 12
    vg, va, vb, vgrad = _vec(d, 10), _vec(d, 11), _vec(d, 12), _vec(d, 13)
    tensors = {"v_global": vg, "v_domain.a": va, "v_domain.b": vb, "dir.grad": vgrad}
    # the main job's kind of asset: a behaviour direction, prefill when the gate opens (no push)
    save_asset(
        tmp_path / "grad", tensors, _asa_manifest(d, direction="grad", action="prefill", on_close="forbid")
    )
    with pytest.raises(ControlVectorError, match="action is 'prefill'.*push-only"):
        export_control_vector(tmp_path / "grad", tmp_path / "g.gguf")
    assert not (tmp_path / "g.gguf").exists()
    info = export_control_vector(tmp_path / "grad", tmp_path / "g.gguf", push_only=True)
    exported = read_control_vector(tmp_path / "g.gguf").directions[4]
    assert torch.allclose(exported, 5.0 * vgrad / vgrad.norm(), atol=1e-6)  # the asset's own direction
    assert torch.nn.functional.cosine_similarity(exported, vg, dim=0) < 0.99  # not the global mean difference
    assert "prefill" in info["asa_not_expressed"] and "forbid" in info["asa_not_expressed"]
    with pytest.raises(ControlVectorError, match="same for every domain"):
        export_control_vector(tmp_path / "grad", tmp_path / "x.gguf", domain="a", push_only=True)
    # a steering asset with the global direction
    save_asset(tmp_path / "glob", tensors, _asa_manifest(d, direction="global", action="steer"))
    info = export_control_vector(tmp_path / "glob", tmp_path / "glob.gguf")
    cv = read_control_vector(tmp_path / "glob.gguf")
    assert torch.allclose(cv.directions[4], 5.0 * vg / vg.norm(), atol=1e-6)
    assert "ungated" in info["asa_note"] and "every" in cv.metadata["applied_by_llamacpp"]
    assert "the gate" in cv.metadata["asa_not_expressed"]


def test_asa_asset_with_the_papers_direction_needs_a_domain(tmp_path):
    d = 12
    vg, va, vb = _vec(d, 10), _vec(d, 11), _vec(d, 12)
    save_asset(tmp_path / "asa", {"v_global": vg, "v_domain.a": va, "v_domain.b": vb}, _asa_manifest(d))
    with pytest.raises(ControlVectorError, match="one per routed domain.*--domain \\(a, b\\)"):
        export_control_vector(tmp_path / "asa", tmp_path / "g.gguf")
    export_control_vector(tmp_path / "asa", tmp_path / "a.gguf", domain="a")
    want = va + 0.5 * vg
    assert torch.allclose(
        read_control_vector(tmp_path / "a.gguf").directions[4], 5.0 * want / want.norm(), atol=1e-6
    )
    with pytest.raises(ControlVectorError, match="unknown domain 'c'.*a, b"):
        export_control_vector(tmp_path / "asa", tmp_path / "c.gguf", domain="c")
    assert not (tmp_path / "c.gguf").exists()


def test_pipeline_asset_exports_the_vector_asa_adds(tmp_path, tiny_models):
    """The tiny pipeline's real asset: the exported tensor is strength * mean_norm * the direction the asset's
    controller adds for an open gate."""
    from serve_helpers import tiny_asset
    from steerlab.asa import AsaSteerer

    lm = tiny_models("llama")
    path = tiny_asset(tmp_path, lm)
    st = AsaSteerer(lm, path)
    per_domain = st.point.direction == "asa"  # unit(v_domain + beta v_global): one vector per routed domain
    domain = st.params.domains[-1] if per_domain else None
    info = export_control_vector(path, tmp_path / "t.gguf", push_only=True, domain=domain)
    got = read_control_vector(tmp_path / "t.gguf").directions[st.point.layer]
    dom = torch.tensor([st.params.domains.index(domain) if per_domain else 0])
    want = (
        st.params.directions(dom, st.point.beta, st.point.direction)[0]
        * st.point.strength
        * st.params.mean_norm
    )
    assert torch.allclose(got, want, atol=1e-5) and info["asa_direction_kind"] == st.point.direction
    if per_domain:  # each domain its own vector, and none given is refused rather than guessed
        other = st.params.directions(torch.tensor([0]), st.point.beta, "asa")[0]
        assert not torch.allclose(other * st.point.strength * st.params.mean_norm, want)
        with pytest.raises(ControlVectorError, match="--domain"):
            export_control_vector(path, tmp_path / "u.gguf", push_only=True)


def test_layer_zero_cannot_be_exported(tmp_path):
    save_vector_asset(tmp_path / "a", SteeringVectorAsset({0: _vec(8, 0)}))
    with pytest.raises(ControlVectorError, match="layer 0.*direction.0"):
        export_control_vector(tmp_path / "a", tmp_path / "x.gguf")
    with pytest.raises(ControlVectorError, match="layer 0"):
        write_control_vector(tmp_path / "x.gguf", {0: _vec(8, 0)}, "llama")
    assert not (tmp_path / "x.gguf").exists()
    _raw_gguf(tmp_path / "z.gguf", tensors={"direction.0": _vec(8, 0).numpy()})
    with pytest.raises(ControlVectorError, match="direction.0"):
        read_control_vector(tmp_path / "z.gguf")


def test_bad_files_and_vectors_are_refused(tmp_path):
    _raw_gguf(tmp_path / "m.gguf", arch="llama", tensors={"direction.1": _vec(8, 0).numpy()})
    with pytest.raises(ControlVectorError, match="'llama'.*'controlvector'"):
        read_control_vector(tmp_path / "m.gguf")
    _raw_gguf(tmp_path / "w.gguf", tensors={"direction.1": _vec(8, 0).numpy()})
    with pytest.raises(ControlVectorError, match="width 8.*hidden size is 576"):
        read_control_vector(tmp_path / "w.gguf", hidden_size=576)
    nan = _vec(8, 0).numpy()
    nan[3] = np.nan
    _raw_gguf(tmp_path / "n.gguf", tensors={"direction.1": nan})
    with pytest.raises(ControlVectorError, match="1 NaN"):
        read_control_vector(tmp_path / "n.gguf")
    _raw_gguf(tmp_path / "h.gguf", tensors={"direction.1": _vec(8, 0).numpy()}, dtype=np.float16)
    with pytest.raises(ControlVectorError, match="F16.*F32"):
        read_control_vector(tmp_path / "h.gguf")
    _raw_gguf(
        tmp_path / "o.gguf", tensors={"direction.1": _vec(8, 0).numpy(), "direction.9": _vec(8, 1).numpy()}
    )
    with pytest.raises(ControlVectorError, match=r"layers \[9\].*4 layers"):
        import_control_vector(tmp_path / "o.gguf", n_layers=4)
    with pytest.raises(ControlVectorError, match="NaN"):
        write_control_vector(tmp_path / "q.gguf", {1: torch.tensor([1.0, float("nan")])}, "llama")
    with pytest.raises(ControlVectorError, match="width 3.*hidden size is 4"):
        write_control_vector(tmp_path / "q.gguf", {1: torch.ones(3)}, "llama", hidden_size=4)
    assert not (tmp_path / "q.gguf").exists()


def test_policy_other_than_all_needs_consent(tmp_path):
    save_vector_asset(tmp_path / "a", SteeringVectorAsset({2: _vec(8, 0)}, policy="prompt_last"))
    with pytest.raises(ControlVectorError, match="'prompt_last'.*every position"):
        export_control_vector(tmp_path / "a", tmp_path / "x.gguf")
    export_control_vector(tmp_path / "a", tmp_path / "x.gguf", all_positions=True)
    assert read_control_vector(tmp_path / "x.gguf").metadata["steerlab_policy"] == "prompt_last"


def test_cli_export_import_show(tmp_path, capsys):
    save_vector_asset(tmp_path / "a", SteeringVectorAsset({2: _vec(8, 0), 3: _vec(8, 1)}, coef=2.0))
    assert main(["gguf", "export", "--asset", str(tmp_path / "a"), "--out", str(tmp_path / "v.gguf")]) == 0
    assert json.loads(capsys.readouterr().out)["layers"] == [2, 3]
    assert main(["gguf", "show", str(tmp_path / "v.gguf")]) == 0
    assert json.loads(capsys.readouterr().out)["hidden_size"] == 8
    assert main(["gguf", "import", str(tmp_path / "v.gguf"), "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    tensors, manifest = load_asset(tmp_path / "b")
    assert manifest["kind"] == "steering_vector" and manifest["policy"] == "all"
    assert torch.equal(tensors["vector.3"], 2.0 * _vec(8, 1))
    save_vector_asset(tmp_path / "z", SteeringVectorAsset({0: _vec(8, 0)}))
    assert main(["gguf", "export", "--asset", str(tmp_path / "z"), "--out", str(tmp_path / "z.gguf")]) == 2
    assert "layer 0" in capsys.readouterr().err


def test_vector_asset_checks():
    with pytest.raises(ValueError, match="NaN"):
        SteeringVectorAsset({1: torch.tensor([0.0, float("inf")])})
    with pytest.raises(ValueError, match=r"widths \[3, 4\]"):
        SteeringVectorAsset({1: torch.ones(3), 2: torch.ones(4)})
    with pytest.raises(ValueError, match="layer 9 is out of range.*8 layers"):
        SteeringVectorAsset({9: torch.ones(3)}, n_layers=8)
    with pytest.raises(ValueError, match="unknown position policy 'sometimes'"):
        SteeringVectorAsset({1: torch.ones(3)}, policy="sometimes")
