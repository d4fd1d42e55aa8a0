import json

import pytest
import torch

from steerlab.assets import AssetError, asset_size_bytes, check_asset_compat, load_asset, save_asset
from steerlab.runs import atomic_dir, load_json, load_tensors, save_json, save_tensors


def _asset(tmp_path):
    t = {"v": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1.5])}
    return save_asset(tmp_path / "a", t, {"kind": "test", "hidden_size": 3, "n_layers": 4, "layer": 2}), t


def test_asset_round_trip(tmp_path):
    path, t = _asset(tmp_path)
    got, manifest = load_asset(path)
    assert all(torch.equal(got[k], t[k]) for k in t)
    assert manifest["format"] == "steerlab-asset" and manifest["tensors"]["v"]["shape"] == [2, 3]
    assert asset_size_bytes(path) > 0 and not list(tmp_path.glob(".a.tmp-*"))


def test_tampered_and_truncated_assets_fail(tmp_path):
    path, _ = _asset(tmp_path)
    f = path / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(AssetError, match="truncated or was modified"):
        load_asset(path)
    f.write_bytes(bytes(data[:-5]))
    with pytest.raises(AssetError, match="truncated or was modified"):
        load_asset(path)
    (path / "manifest.json").write_text("{broken")
    with pytest.raises(AssetError, match="not valid JSON"):
        load_asset(path)
    with pytest.raises(AssetError, match="does not exist"):
        load_asset(tmp_path / "nothing")
    with pytest.raises(AssetError, match="NaN/inf"):
        save_asset(tmp_path / "n", {"x": torch.tensor([float("nan")])}, {})


@pytest.mark.parametrize(
    "field,value", [("layer", 3), ("hidden_size", 4), ("kind", "asa"), ("n_layers", 5), ("extra", 1)]
)
def test_an_edited_manifest_field_fails_to_load(tmp_path, field, value):
    path, _ = _asset(tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m[field] = value
    (path / "manifest.json").write_text(json.dumps(m, indent=2))
    with pytest.raises(AssetError, match="modified after the asset was written"):
        load_asset(path)
    m = json.loads((path / "manifest.json").read_text())
    m["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AssetError, match="format version 1.*re-export"):
        load_asset(path)


def test_compat_errors(tmp_path):
    _, manifest = load_asset(_asset(tmp_path)[0])
    check_asset_compat(manifest, hidden_size=3, n_layers=4)
    with pytest.raises(AssetError, match="hidden size 3, this model has 576"):
        check_asset_compat(manifest, hidden_size=576, n_layers=4)
    with pytest.raises(AssetError, match="4 layers, this model has 30"):
        check_asset_compat(manifest, hidden_size=3, n_layers=30)
    with pytest.raises(AssetError, match="fingerprint"):
        check_asset_compat(
            {**manifest, "model_fingerprint": "aa"},
            hidden_size=3,
            n_layers=4,
            model_fingerprint="bb",
            strict_fingerprint=True,
        )


def test_atomic_dir_never_leaves_a_half_written_folder(tmp_path):
    final = tmp_path / "stage"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("killed mid-stage")
    assert not final.exists() and [p.name for p in tmp_path.iterdir()] == []
    with atomic_dir(final) as tmp:
        save_json(tmp / "out.json", {"x": [1, 2]})
        save_tensors(tmp / "t.safetensors", {"t": torch.ones(2)})
        assert not final.exists()  # only the finished folder carries the name
    assert load_json(final / "out.json") == {"x": [1, 2]}
    assert torch.equal(load_tensors(final / "t.safetensors")["t"], torch.ones(2))
    with atomic_dir(final) as tmp:  # replacing a finished folder swaps it whole
        (tmp / "new.txt").write_text("y")
    assert [p.name for p in final.iterdir()] == ["new.txt"] and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(FileNotFoundError, match="has the stage"):
        load_tensors(tmp_path / "missing.safetensors")
