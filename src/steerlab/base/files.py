"""Atomic files: everything steerlab writes goes to a temporary name beside its final one, is flushed to disk,
and only then takes the final name, so a half-written file or folder is never mistaken for a finished one (a run
killed mid-write leaves the old file or none, never a truncated one).

One mechanism for every writer: ``atomic_write``/``atomic_write_json`` for bytes, text and JSON,
``atomic_open`` for code that writes to a file object (csv), ``atomic_path`` for writers that want a file name
(safetensors, matplotlib's ``savefig``, a GGUF writer), ``atomic_dir`` for a whole folder."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import UserError

# marks a temporary file or folder: ``.<stem>.tmp-<random><suffix>`` (files) or ``.<name>.tmp-<random>`` (folders)
TMP_TAG = ".tmp-"


def _reserve(path: Path) -> Path:
    """Create an empty, hidden temporary file beside ``path`` that no other writer can hold. It keeps ``path``'s
    suffix (matplotlib picks the image format from it) and gets the permissions a plain ``open`` would (the
    umask applies), not ``mkstemp``'s 0600."""
    while True:
        tmp = path.with_name(f".{path.stem}{TMP_TAG}{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file name beside ``path`` for a writer that needs a name; when the block ends without an
    error the file is flushed to disk and renamed to ``path`` (replacing an older one), on any error (Ctrl-C
    included) it is removed and ``path`` is left as it was. The file exists (empty) when the block starts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _reserve(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that only takes the name ``path`` once the block ends without an error (see
    ``atomic_path``). ``mode`` is ``"w"`` or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        if mode == "wb":
            with open(tmp, "wb") as f:
                yield f
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as f:
                yield f


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)


def atomic_write_json(
    path: str | Path, obj: object, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None
) -> Path:
    """``obj`` as JSON in ``path``, written atomically (``default`` converts what JSON cannot hold)."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent, default=default)
    return Path(path)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary directory into place; an existing one is swapped out, then deleted."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; on success it replaces ``final``, on any error it is removed.
    A half-written directory never carries the final name."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{TMP_TAG}", dir=final.parent))
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_user_text(path: str | Path, what: str = "a text file") -> str:
    """The text of a file the user named, or a UserError naming the file when it is not UTF-8 text (a binary
    file, say) instead of a bare codec error."""
    p = Path(path)
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(
            f"{p} is not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}): expected {what}"
        ) from None
