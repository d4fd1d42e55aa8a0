"""The base every part of steerlab may import: the user-error classes with the checks that raise them, and
atomic files. It imports nothing else of steerlab and nothing beyond the standard library, so that importing an
error class stays light (an import-linter contract in pyproject.toml holds it to that)."""

from .errors import (
    DataError,
    LayerError,
    UserError,
    check_choice,
    check_layer_numbers,
    check_range,
    did_you_mean,
)
from .files import (
    TMP_TAG,
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write,
    atomic_write_json,
    read_user_text,
    replace_dir,
)

__all__ = [
    "TMP_TAG",
    "DataError",
    "LayerError",
    "UserError",
    "atomic_dir",
    "atomic_open",
    "atomic_path",
    "atomic_write",
    "atomic_write_json",
    "check_choice",
    "check_layer_numbers",
    "check_range",
    "did_you_mean",
    "read_user_text",
    "replace_dir",
]
