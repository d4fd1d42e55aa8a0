#!/usr/bin/env bash
# Move the tested pins (constraints.txt) to what .venv-latest holds, after scripts/test_latest.sh --all passed.
# Then widen steerlab.versions.TESTED to the new transformers (tests/test_hf_contract.py checks they agree).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-latest/bin/python ] || { echo "no .venv-latest: run scripts/test_latest.sh --all first" >&2; exit 2; }
tmp=$(mktemp constraints.XXXX)
{
  sed -n '1,3p' constraints.txt
  .venv-latest/bin/pip freeze | grep -v '^-e\|^steerlab' | sed 's/+cpu$//'
} > "$tmp"
mv "$tmp" constraints.txt
echo "constraints.txt updated; now set steerlab.versions.TESTED['transformers'] to include" \
  "$(grep '^transformers==' constraints.txt)"
