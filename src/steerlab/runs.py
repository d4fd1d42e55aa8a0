"""Run directories: each stage is written to a temporary name and renamed when complete, so a half-written
stage is never mistaken for a finished one; a finished stage records the parameters it was computed with."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from . import __version__

DONE = "_DONE.json"


def save_json(path: str | Path, obj: object) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
    os.replace(tmp, path)
    return path


def save_csv(path: str | Path, rows: list[dict]) -> Path:
    """Rows of dicts as CSV (columns from the union of keys, first-seen order), written atomically."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cols))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)
    return path


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist (has the stage that writes it run?)")
    return load_file(str(path))


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary directory into place; an existing one is swapped out, then deleted."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


class RunDir:
    """``root/<stage>/`` directories with a completion marker that stores the stage's parameters."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, stage: str) -> Path:
        return self.root / stage

    def is_done(self, stage: str, params: object = None) -> bool:
        marker = self.path(stage) / DONE
        if not marker.is_file():
            return False
        if params is None:
            return True
        try:
            return json.loads(marker.read_text()).get("params") == json.loads(
                json.dumps(params, default=_jsonable)
            )
        except (json.JSONDecodeError, OSError):
            return False

    @contextlib.contextmanager
    def writing(self, stage: str, params: object = None) -> Iterator[Path]:
        """Yield a temporary directory; on success it replaces ``root/<stage>`` and is marked done."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{stage}.tmp-", dir=self.root))
        t0 = time.perf_counter()
        try:
            yield tmp
            save_json(
                tmp / DONE,
                {
                    "stage": stage,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "steerlab_version": __version__,
                    "params": params,
                },
            )
            replace_dir(tmp, self.path(stage))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
