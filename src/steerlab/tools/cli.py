"""``steerlab bfcl eval``: BFCL relevance detection and AST accuracy, baseline and optionally ASA."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..eval.bfcl_eval import BfclConfig, bfcl_markdown, evaluate_bfcl
    from ..models import load_model
    from ..runs import save_json

    cfg = BfclConfig(
        categories=tuple(args.categories.split(",")),
        limit=None if args.limit == 0 else args.limit,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    model = args.model
    if model is None and args.asset:
        model = json.loads((Path(args.asset) / "manifest.json").read_text())["model"]
    lm = load_model(model or "smollm2-135m", device=args.device, dtype=args.dtype)
    res = evaluate_bfcl(lm, cfg, asa_asset=args.asset, progress=not args.quiet)
    out = Path(args.out)
    save_json(out / "bfcl.json", res)
    md = bfcl_markdown(res)
    (out / "bfcl.md").write_text(md + "\n")
    print(md)
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bfcl", help="Berkeley Function Calling Leaderboard (offline, from bfcl-eval's data)")
    bsub = b.add_subparsers(dest="bfcl_command", metavar="COMMAND", required=True)
    e = bsub.add_parser("eval", help="relevance detection + AST accuracy, baseline vs an ASA asset")
    e.add_argument("--model", help="default: the asset's model, else smollm2-135m")
    e.add_argument("--asset", help="an ASA asset directory (fitted on the ASA data, never on BFCL)")
    e.add_argument("--categories", default="irrelevance,simple_python")
    e.add_argument("--limit", type=int, default=50, help="items per category (0 = all)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=96)
    e.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    e.add_argument("--device", default="auto")
    e.add_argument("--dtype", default="auto")
    e.add_argument("--out", default="runs/bfcl")
    e.add_argument("-q", "--quiet", action="store_true")
    e.set_defaults(func=_cmd_eval)
