"""Copy what a transcoder run wrote into the docs (``docs/results/sae/``), file by file and atomically, so the
committed figures are the run's own output and never typed by hand.

    .venv/bin/python scripts/publish_sae_results.py study runs/sae/tooluse                 # report + delta_summary.json
    .venv/bin/python scripts/publish_sae_results.py study runs/sae/all_mlp --prefix all_mlp_
    .venv/bin/python scripts/publish_sae_results.py sweep runs/sae/sparsity_sweep          # table + pareto.png
    .venv/bin/python scripts/publish_sae_results.py restored runs/sae/all_mlp --prefix all_mlp_
        # only the evaluate stage's share restored per condition (restored.json), for a run stopped before report

Each file goes to ``DEST/PREFIX + name``; a file the run did not write is reported and skipped, not invented.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from steerlab.runs import save_json

FILES = {
    # the study's report stage: runs/<name>/report/
    "study": (
        "report",
        [
            "report.md",
            "delta_summary.json",
            "conditions.csv",
            "latents.csv",
            "tool_call_rate.png",
            "delta_scale_sweep.png",
            "latents.png",
        ],
    ),
    # the sparsity sweep's report stage
    "sweep": ("report", ["sparsity_sweep.md", "pareto.png"]),
}


def copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name, suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def restored_summary(evaluate: dict) -> dict:
    """Per splice condition: which layers got the delta, the tool-call rate per subset and the share of the
    finetuned behaviour restored (0 = base transcoders only, 1 = the finetuned model), from the evaluate stage."""
    return {
        "spliced_layers": evaluate["layers"],
        "conditions": {
            name: {
                "transcoder": c["transcoder"],
                "scale": c["scale"],
                "delta_layers": c["delta_layers"],
                "tool_call_rate": {s: m["tool_call_rate"] for s, m in c["subsets"].items()},
                "completion_ce": {s: m["ce"] for s, m in c["subsets"].items()},
                "restored": c.get("restored"),
            }
            for name, c in evaluate["conditions"].items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=[*sorted(FILES), "restored"], help="what to publish")
    ap.add_argument("run", type=Path, help="the run directory (its --out)")
    ap.add_argument("--dest", type=Path, default=Path("docs/results/sae"), help="where the copies go")
    ap.add_argument("--prefix", default="", help="prepended to every copied file's name")
    args = ap.parse_args(argv)
    if args.kind == "restored":
        src = args.run / "evaluate" / "result.json"
        if not (args.run / "evaluate" / "_DONE.json").is_file():
            print(f"{args.run / 'evaluate'} is not a finished evaluate stage", file=sys.stderr)
            return 1
        dst = args.dest / f"{args.prefix}restored.json"
        save_json(dst, restored_summary(json.loads(src.read_text())))
        print(f"{src} -> {dst}")
        return 0
    stage, names = FILES[args.kind]
    src_dir = args.run / stage
    if not (src_dir / "_DONE.json").is_file():
        print(f"{src_dir} is not a finished report stage; run the {args.kind} first", file=sys.stderr)
        return 1
    for name in names:
        src = src_dir / name
        if not src.is_file():
            print(f"skipped {src} (the run did not write it)")
            continue
        dst = args.dest / f"{args.prefix}{name}"
        copy_atomic(src, dst)
        print(f"{src} -> {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
