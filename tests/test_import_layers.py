"""The layer contracts of pyproject.toml's [tool.importlinter] (run by scripts/test.sh as `lint-imports`) hold
on this tree, and each one fails when a single import breaks it: the check is run on a copy of the package with
one bad import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(
    not LINT.exists(), reason="import-linter is not installed (pip install -e .[dev])"
)


def _lint(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}  # the copy shadows the editable install (a .pth entry)
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    res = _lint(ROOT / "src", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # a shared layer reaching up to the config mechanism (models imported config and runs before)
        ("models/loading.py", "from ..config import Config", "Layers:"),
        ("models/loading.py", "from ..runs import save_json", "stay free of the config mechanism"),
        # a method importing its sweeps (asa <-> sweeps was a package cycle) or another method (asa -> sae)
        ("asa/stages.py", "from ..sweeps import asa", "Layers:"),
        ("asa/lora.py", "from ..sae import finetune", "Layers:"),
        # siblings of one layer stay apart
        ("capture/capture.py", "from ..steering import steer", "Layers:"),
        # the base loads nothing heavy
        ("base/files.py", "import torch", "standard library only"),
        ("eval/stats.py", "import pickle", "No pickle"),
        # a module cycle inside a package (capture.py <-> cache.py was one)
        ("capture/cache.py", "from .capture import capture", "No import cycles"),
    ],
)
def test_one_bad_import_breaks_its_contract(tmp_path, module, line, contract):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "steerlab", src / "steerlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = src / "steerlab" / module
    target.write_text(target.read_text() + f"\n{line}  # the violation under test\n")
    res = _lint(src, tmp_path)
    assert res.returncode != 0, res.stdout
    broken = res.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, res.stdout
