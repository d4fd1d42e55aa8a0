"""Run files: JSON, CSV and safetensors under a run directory, each written atomically (a temporary name, then a
rename: ``steerlab.base.files``), so a half-written one is never mistaken for a finished one."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# the atomic-file helpers live in steerlab.base; their old home keeps exporting the folder ones
from .base.files import TMP_TAG as TMP_TAG
from .base.files import atomic_dir as atomic_dir
from .base.files import atomic_open, atomic_path, atomic_write_json
from .base.files import replace_dir as replace_dir


def save_json(path: str | Path, obj: object) -> Path:
    return atomic_write_json(path, obj, indent=2, default=_jsonable)


def save_csv(path: str | Path, rows: list[dict]) -> Path:
    """Rows of dicts as CSV (columns from the union of keys, first-seen order), written atomically."""
    import csv

    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cols))
        w.writeheader()
        w.writerows(rows)
    return Path(path)


def _jsonable(x: object) -> object:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def load_json(path: str | Path) -> object:
    return json.loads(Path(path).read_text())


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
    return Path(path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist (has the stage that writes it run?)")
    return load_file(str(path))
