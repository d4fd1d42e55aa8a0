"""``steerlab gguf ...``: llama.cpp control vectors out of and into steerlab assets."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_export(args: argparse.Namespace) -> int:
    from .assets.gguf_cvec import export_control_vector

    info = export_control_vector(
        args.asset,
        args.out,
        domain=args.domain,
        model_hint=args.model_hint,
        all_positions=args.all_positions,
        push_only=args.push_only,
    )
    print(json.dumps(info, indent=2))
    if "asa_not_expressed" in info:
        print(
            f"WARNING: {args.out} holds {info['asa_direction']} at layer {info['layers'][0]} as an ungated push at "
            "every position. llama.cpp cannot express what else this ASA asset does: "
            + info["asa_not_expressed"]
            + ". What llama.cpp runs with it is not what the evaluate stage measured.",
            file=sys.stderr,
        )
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .assets.gguf_cvec import import_control_vector

    hidden = n_layers = fingerprint = None
    if args.model:
        from .models import load_model

        lm = load_model(args.model, device="cpu")
        hidden, n_layers, fingerprint = lm.hidden_size, lm.n_layers, lm.fingerprint
    asset = import_control_vector(args.file, None, hidden_size=hidden, n_layers=n_layers, model=args.model)
    if fingerprint:
        asset.model_fingerprint = fingerprint
    from .assets.vector_asset import save_vector_asset

    save_vector_asset(args.out, asset)
    print(
        json.dumps(
            {
                "path": args.out,
                "layers": asset.layers,
                "hidden_size": asset.hidden_size,
                "norms": {k: round(float(v.norm()), 4) for k, v in asset.vectors.items()},
                "policy": asset.policy,
                "model": asset.model,
            },
            indent=2,
        )
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .assets.gguf_cvec import read_control_vector

    cv = read_control_vector(args.file)
    print(
        json.dumps(
            {
                "model_hint": cv.model_hint,
                "layer_count": cv.layer_count,
                "hidden_size": cv.hidden_size,
                "layers": sorted(cv.directions),
                "norms": {k: round(float(v.norm()), 4) for k, v in sorted(cv.directions.items())},
                "steerlab_metadata": cv.metadata,
            },
            indent=2,
        )
    )
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gguf", help="llama.cpp control vectors (GGUF): export steerlab assets, import files")
    gsub = g.add_subparsers(dest="gguf_command", metavar="COMMAND", required=True)
    e = gsub.add_parser(
        "export",
        help="write a steering-vector or ASA asset as a llama.cpp control vector (direction.N = steerlab layer N)",
    )
    e.add_argument("--asset", required=True, help="a steerlab asset directory (kind steering_vector or asa)")
    e.add_argument("--out", required=True, help="the .gguf file to write")
    e.add_argument(
        "--domain",
        help="ASA assets whose direction is the paper's per-domain one (direction 'asa'): the domain whose "
        "unit(v_domain + beta*v_global) to export",
    )
    e.add_argument(
        "--push-only",
        dest="push_only",
        action="store_true",
        help="ASA assets whose action is 'prefill' (no push): export the direction as an ungated push anyway",
    )
    e.add_argument(
        "--model-hint", dest="model_hint", help="controlvector.model_hint (default: the asset's model)"
    )
    e.add_argument(
        "--all-positions",
        dest="all_positions",
        action="store_true",
        help="export a vector whose steerlab policy is not 'all' (llama.cpp adds it at every position)",
    )
    e.set_defaults(func=_cmd_export)
    i = gsub.add_parser("import", help="read a llama.cpp control vector into a steering_vector asset")
    i.add_argument("file", help="a control-vector .gguf (steerlab, llama-cvector-generator, repeng, ...)")
    i.add_argument("--out", required=True, help="the asset directory to write")
    i.add_argument(
        "--model", help="check the vector fits this model (alias, .gguf, dir or hub id) and record it"
    )
    i.set_defaults(func=_cmd_import)
    s = gsub.add_parser("show", help="print what a control-vector file holds")
    s.add_argument("file")
    s.set_defaults(func=_cmd_show)
