#!/usr/bin/env bash
# The peers' environment (./.venv-peers, or $PEERS_VENV): steerlab plus steering-vectors 0.12.2 and repeng 0.4.0, for
# tests/test_peers.py and benchmarks/bench_vs_peers.py. Its own venv because a plain
# `pip install steering-vectors repeng` downgrades transformers to 4.x (steering-vectors declares transformers<5),
# which steerlab does not support. The recipe:
# - steerlab at its tested versions (constraints.txt, so transformers 5) except numpy < 2: repeng 0.4.0 declares
#   numpy<2 and really needs it (it uses np.float_, removed in NumPy 2: `import repeng` fails on numpy 2.x);
# - repeng with its dependencies, all already met by those versions;
# - steering-vectors with --no-deps (its transformers<5 pin is the only one it breaks; it works on transformers 5,
#   as tests/test_peers.py shows).
# The import check at the end fails this script if a peer does not load or transformers is not >= 5.
# Idempotent: a second run only re-checks. Then:
#   .venv-peers/bin/python -m pytest -s tests/test_peers.py
#   OMP_NUM_THREADS=1 .venv-peers/bin/python benchmarks/bench_vs_peers.py
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_VENV=${PEERS_VENV:-.venv-peers}
mkdir -p "$PEERS_VENV"
PINS=$PEERS_VENV/constraints-peers.txt
sed 's/^numpy==.*/numpy<2/' constraints.txt > "$PINS"
VENV=$PEERS_VENV STEERLAB_EXTRAS=dev STEERLAB_CONSTRAINTS=$PINS bash scripts/setup.sh
P=$PEERS_VENV/bin/python
echo "[peers] installing repeng==0.4.0 (numpy<2), and steering-vectors==0.12.2 --no-deps (it declares transformers<5)"
"$P" -m pip install -q -c "$PINS" "repeng==0.4.0"
"$P" -m pip install -q --no-deps "steering-vectors==0.12.2"
"$P" - <<'PY'
import importlib.metadata as md

import repeng
import steering_vectors
import transformers

import steerlab

major = int(transformers.__version__.split(".")[0])
assert major >= 5, f"transformers {transformers.__version__} in the peers venv: steerlab needs >= 5"
names = ("steering-vectors", "repeng", "transformers", "torch", "numpy")
print("[peers] " + " | ".join(f"{n} {md.version(n)}" for n in names) + f" | steerlab from {steerlab.__file__}")
PY
