"""The dependency versions steerlab was tested with, and a once-per-process note when the installed ones differ.

Why: steering hooks depend on how transformers passes the KV cache and positions to a model's forward; a release
that changes that (5.24 renamed ``past_key_values`` to ``cache``) can move steering to the wrong positions without
an error. ``constraints.txt`` pins the tested point; ``TESTED`` is the range the parity tests passed on (a test
keeps the two in step). ``python -m steerlab.versions`` prints the check.
"""

from __future__ import annotations

import sys
import warnings
from importlib import metadata

# package -> (oldest tested, newest tested), inclusive; both ends ran the steering/generation parity tests
TESTED: dict[str, tuple[str, str]] = {
    "transformers": ("5.0.0", "5.24.0"),
}

_warned = False


def _parse(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+", 1)[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
        if digits != part:  # 5.25.0rc1 -> (5, 25, 0): a pre-release counts as its release
            break
    return tuple(out)


def untested(installed: dict[str, str] | None = None) -> list[str]:
    """One line per installed package outside its tested range (empty when all are inside)."""
    lines = []
    for name, (lo, hi) in TESTED.items():
        if installed is not None:
            version = installed.get(name)
        else:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        if version is None:
            continue
        if not _parse(lo) <= _parse(version) <= _parse(hi):
            lines.append(f"{name} {version} is outside the versions steerlab was tested with ({lo} to {hi})")
    return lines


def check_tested_versions() -> None:
    """Warn once per process when transformers is outside the tested range."""
    global _warned
    if _warned:
        return
    _warned = True
    lines = untested()
    if lines:
        warnings.warn(
            "; ".join(lines)
            + ". Steering positions depend on how transformers passes the KV cache: run the parity tests "
            "(bash scripts/test_latest.sh) or install the tested versions (pip install -c constraints.txt ...).",
            UserWarning,
            stacklevel=3,
        )


def main() -> int:
    lines = untested()
    for name in TESTED:
        try:
            v = metadata.version(name)
        except metadata.PackageNotFoundError:
            v = "not installed"
        lo, hi = TESTED[name]
        print(f"[versions] {name} {v} (tested {lo} to {hi})")
    for line in lines:
        print(f"[versions] WARNING: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
