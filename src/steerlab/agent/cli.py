"""``steerlab agent eval``: the agent benchmark (see ``steerlab.agent.bench``)."""

from __future__ import annotations

import argparse
import sys

from ..config import UserError


def spread(tasks: list, limit: int | None) -> list:
    """The first ``limit`` tasks taken in turn from each kind (so a short run still covers every kind)."""
    if limit is None:
        return tasks
    kinds: dict[str, list] = {}
    for t in tasks:
        kinds.setdefault(t.kind, []).append(t)
    order = [
        t for i in range(max(map(len, kinds.values()))) for v in kinds.values() if i < len(v) for t in [v[i]]
    ]
    return order[:limit]


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..data.asa_data import load_asa_tools
    from ..serve.cli import need
    from .bench import CONDITIONS, condition_engine, run_condition, save_condition, write_report
    from .tasks import load_tasks

    need("fastapi", "uvicorn", "openai", extra="agent")
    if args.max_rounds < 1 or args.max_tokens < 1 or args.concurrency < 1 or not args.timeout > 0:
        raise UserError("--max-rounds, --max-tokens and --concurrency must be >= 1 and --timeout > 0")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    names = [c.strip() for c in (args.conditions or "").split(",") if c.strip()]
    if not names:
        names = ["plain", "few_shot"] + (["asset"] if args.asset else [])
    if args.base_url is None:
        bad = [n for n in names if n not in CONDITIONS]
        if bad:
            raise UserError(f"unknown condition(s) {bad}; valid: {', '.join(CONDITIONS)}")
        if "asset" in names and args.asset is None:
            raise UserError("condition 'asset' needs --asset DIR (an ASA asset from `steerlab asa run`)")
    elif len(names) != 1:
        raise UserError("with --base-url, --conditions names the one condition being measured (its label)")
    tasks = spread(load_tasks(args.tasks, args.subset), args.limit)
    tools = load_asa_tools()  # the tools the shipped assets were fitted with
    lm = None
    if args.base_url is None:
        from ..serve.engine import _load_any, asset_model

        spec = args.model or (asset_model(args.asset) if args.asset else "smollm2-135m")
        lm = _load_any(spec, args.device, args.dtype)  # loaded once, shared by every condition
    for name in names:
        source = args.base_url if args.base_url else (lambda n=name: condition_engine(lm, n, args.asset))
        print(f"agent eval: {name} on {len(tasks)} tasks ...", file=sys.stderr, flush=True)
        trs, info = run_condition(
            source,
            tasks,
            tools,
            model=args.model,
            max_rounds=args.max_rounds,
            max_tokens=args.max_tokens,
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
        m = save_condition(args.out, name, tasks, trs, info, n_boot=args.n_boot)
        ts, nc = m["tool_success"], m["no_call"]
        print(
            f"  {name}: tool-task success {ts['rate'][0]:.3f} ({ts['k']}/{ts['n']})"
            + (f", no call on no-tool tasks {nc['rate'][0]:.3f} ({nc['k']}/{nc['n']})" if nc else "")
            + f", invalid calls {m['invalid_calls']}, {info['wall_seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    print(write_report(args.out))
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="agent benchmark: a real openai-client loop against steerlab serve")
    asub = p.add_subparsers(dest="agent_command", metavar="SUBCOMMAND", required=True)
    e = asub.add_parser(
        "eval",
        help="run held-out agent tasks through a tool loop per condition (plain, few_shot, asset)",
        description="Each condition is served in-process on a loopback port (or --base-url names a running server); "
        "tools run by safe local stand-ins; report and transcripts under --out.",
    )
    e.add_argument("--asset", default=None, help="ASA asset directory (condition 'asset')")
    e.add_argument("--model", default=None, help="model spec (default: the asset's model, else smollm2-135m)")
    e.add_argument(
        "--base-url", dest="base_url", default=None, help="an OpenAI-compatible server to measure instead"
    )
    e.add_argument(
        "--conditions", default=None, help="comma-separated: plain, few_shot, asset (default: all usable)"
    )
    e.add_argument("--tasks", default=None, help="a tasks JSONL (default: the shipped held-out tasks)")
    e.add_argument("--subset", default="all", help="all | small (the few tasks the fast test runs)")
    e.add_argument("--limit", type=int, default=None, help="at most N tasks, taken in turn from each kind")
    e.add_argument("--max-rounds", dest="max_rounds", type=int, default=3, help="most replies per task")
    e.add_argument(
        "--max-tokens", dest="max_tokens", type=int, default=160, help="max_tokens of each request"
    )
    e.add_argument(
        "--concurrency", type=int, default=4, help="tasks in flight at once (the server batches them)"
    )
    e.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds a request may take (a loaded CPU is slow)"
    )
    e.add_argument(
        "--n-boot", dest="n_boot", type=int, default=2000, help="bootstrap resamples for intervals"
    )
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    e.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    e.add_argument("--out", required=True, help="run folder (one sub-folder per condition, report.md)")
    e.set_defaults(func=_cmd_eval)
