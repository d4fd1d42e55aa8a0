#!/usr/bin/env bash
# The README's test command: set up on a fresh machine (idempotent), lint, then run the test suite.
# Slow studies run in a reduced form by default; STEERLAB_FULL=1 runs them at full size.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the peers' own venv (.venv-peers): tests/test_benchmarks_smoke.py runs the peer comparison in it, so a broken
# recipe fails here instead of going unnoticed
bash scripts/peers_env.sh
bash scripts/setup_browser.sh || echo "[setup] browser install failed: the browser tests will skip"
export TOKENIZERS_PARALLELISM=false
# the same property-test examples every run (tests/conftest.py); HYPOTHESIS_PROFILE=default explores afresh
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
.venv/bin/ruff check src tests benchmarks scripts
# the layer order (pyproject.toml's [tool.importlinter]): a layer imports only from those below it, no cycles
.venv/bin/lint-imports
# unused code (settings in pyproject.toml's [tool.vulture]; false positives in scripts/vulture_whitelist.py)
.venv/bin/vulture
# the API reference is generated from the docstrings; --strict fails on a broken reference
.venv/bin/mkdocs build --strict -q
.venv/bin/python -m pytest -q "$@"
