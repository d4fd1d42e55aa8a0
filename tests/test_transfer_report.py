"""scripts/transfer_report.py judges each goal of issue 21 from the result files, met or missed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _row(v: float) -> list[float]:
    return [v, v - 0.01, v + 0.01]


def test_transfer_report_judges_each_goal(tmp_path: Path) -> None:
    bfcl, lodo, curve = (tmp_path / d for d in ("bfcl", "lodo", "curve"))
    for d in (bfcl, lodo, curve):
        d.mkdir()
    cats = {
        "irrelevance": {"baseline": {"trigger_rate": _row(0.0)}, "asa": {"trigger_rate": _row(0.15)}},
        "live_irrelevance": {"baseline": {"trigger_rate": _row(0.0)}, "asa": {"trigger_rate": _row(0.45)}},
        "simple_python": {
            "baseline": {"trigger_rate": _row(0.0), "ast_accuracy": _row(0.0)},
            "asa": {"trigger_rate": _row(0.9), "ast_accuracy": _row(0.2)},
        },
    }
    (bfcl / "bfcl.json").write_text(
        json.dumps(
            {
                "categories": cats,
                "sizes": {c: {"n": 50, "of": 240} for c in cats},
                "ast_failures": {"simple_python": {"asa": {"value": 3, "type": 1}}},
            }
        )
    )
    folds = {
        "math": {"rows": {"shared": {"chosen": True, "f1": _row(0.9), "fpr": _row(0.05)}}},
        "code": {"rows": {"shared": {"chosen": True, "f1": _row(0.5), "fpr": _row(0.0)}}},
    }
    (lodo / "lodo.json").write_text(
        json.dumps({"layer": 3, "tau": 0.9, "action": "prefill", "folds": folds, "pooled": {}})
    )
    pts = [
        {"per_cell": 4, "gate": "shared", "f1": _row(0.8), "fpr": _row(0.0)},
        {"per_cell": 12, "gate": "shared", "f1": _row(0.95), "fpr": _row(0.02)},
    ]
    (curve / "curve.json").write_text(json.dumps({"tools": "t.json", "data": "d.jsonl", "points": pts}))
    out = tmp_path / "transfer.md"
    cmd = [sys.executable, str(ROOT / "scripts" / "transfer_report.py"), "--out", str(out)]
    cmd += ["--bfcl", str(bfcl), "--lodo", str(lodo), "--curve", str(curve)]
    subprocess.run(cmd, check=True, capture_output=True)
    text = out.read_text()
    line = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| ")}
    assert "**met**" in line["irrelevance false-call rate <= 0.2"]
    assert "**missed**" in line["live_irrelevance false-call rate <= 0.3"]
    assert "**met**" in line["simple_python trigger rate >= 0.80"]
    assert "**missed**" in line["simple_python AST accuracy >= 0.45"]
    assert "**met**" in line["math"] and "**missed**" in line["code"]
    assert "**missed**" in line["4"] and "**met**" in line["12"]
    assert "simple_python 50 of 240" in text and "| simple_python | 1 | 3 |" in text
