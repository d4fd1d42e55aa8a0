#!/usr/bin/env bash
# Test steerlab against the newest releases pyproject.toml allows (not the tested pins of constraints.txt), in its
# own environment (.venv-latest), so that an upstream change shows up as a named failing check, not as wrong
# steering. First the contract with transformers and the parity tests (KV cache on = off, batched = single,
# strength 0 = plain model), then, with --all, the whole suite. torch stays at the CPU wheel on this machine's
# disk (a newer torch would pull a CUDA build of several GB). When it passes: scripts/update_constraints.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-latest STEERLAB_UNPINNED=1 bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false
echo "[latest] the contract with transformers and the parity tests"
if ! .venv-latest/bin/python -m pytest -q -p no:cacheprovider tests/test_hf_contract.py tests/test_steering.py \
    tests/test_generation.py tests/test_capture.py tests/test_exact_shortcuts.py; then
  echo "[latest] FAILED on the newest releases: $(.venv-latest/bin/python -m steerlab.versions | tr '\n' ' ')"
  echo "[latest] steerlab is not correct on them yet; keep constraints.txt as it is"
  exit 1
fi
if [ "${1:-}" = "--all" ]; then
  .venv-latest/bin/python -m pytest -q -p no:cacheprovider
fi
echo "[latest] passed: $(.venv-latest/bin/python -m steerlab.versions | tr '\n' ' ')"
