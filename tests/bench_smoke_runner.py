"""Run benchmark scripts with ``--smoke`` in one interpreter, each as ``__main__`` exactly as
``python benchmarks/NAME.py --smoke --out OUT`` runs it (the script's folder first on ``sys.path``), and write what
happened to each into ``OUT/status.json``: its error (None when it finished) and seconds.

One interpreter for all of them because importing torch, transformers and steerlab costs more than a smoke run
itself on a busy 2-core machine. Used by tests/test_benchmarks_smoke.py.
Usage: ``python tests/bench_smoke_runner.py OUT SCRIPT [SCRIPT ...]``.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run_one(name: str, out: Path) -> str | None:
    """Run ``benchmarks/name`` with ``--smoke --out out``; its output goes to ``out/name.log``. The error or None."""
    script = BENCH / name
    argv = sys.argv
    sys.argv = [str(script), "--smoke", "--out", str(out)]
    try:
        with (
            open(out / f"{name}.log", "w") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return None if e.code in (0, None) else f"exited with {e.code!r}"
    except BaseException:  # noqa: BLE001 - any failure is the script's result, reported to the test
        return traceback.format_exc()
    finally:
        sys.argv = argv
    return None


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(BENCH))
    status: dict[str, dict] = {}
    for name in sys.argv[2:]:
        t = time.perf_counter()
        error = run_one(name, out)
        status[name] = {"error": error, "seconds": time.perf_counter() - t}
        print(
            f"[smoke] {name}: {'ok' if error is None else 'FAILED'} in {status[name]['seconds']:.1f} s",
            flush=True,
        )
        (out / "status.json").write_text(json.dumps(status, indent=2))


if __name__ == "__main__":
    main()
