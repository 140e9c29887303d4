"""``smsflow sandbox``: run the local Twilio-compatible API until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import os

from smsflow.sandbox import SandboxConfig, serve
from smsflow.sandbox.faults import KNOWN_FAULTS, parse_faults

DEFAULT_SID = "AC" + "0" * 32


def register(subparsers) -> None:
    p = subparsers.add_parser("sandbox", help="run a local Twilio-compatible Messages API",
                              description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID", DEFAULT_SID))
    p.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN", "sandbox-token"))
    p.add_argument("--webhook-base", default=None,
                   help="engine webhook base URL, e.g. http://127.0.0.1:8080 (inbound replies)")
    p.add_argument("--fault-rate", type=float, default=0.0,
                   help="share of create calls given a fault")
    p.add_argument("--faults", type=parse_faults, default=KNOWN_FAULTS,
                   help=f"comma-separated, from {','.join(KNOWN_FAULTS)}")
    p.add_argument("--receipt-delay", type=float, default=0.2,
                   help="seconds to 'sent'; as long again to the final status")
    p.add_argument("--timeout-hold", type=float, default=30.0,
                   help="seconds a 'timeout' fault holds the answer")
    p.add_argument("--seed", type=int, default=None, help="seed for fault draws")
    p.add_argument("--max-records", type=int, default=200_000)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = SandboxConfig(
        account_sid=args.account_sid, auth_token=args.auth_token, webhook_base=args.webhook_base,
        fault_rate=args.fault_rate, faults=args.faults, receipt_delay=args.receipt_delay,
        timeout_hold=args.timeout_hold, seed=args.seed, max_records=args.max_records)
    try:
        asyncio.run(serve(config, args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run without the full CLI (no discovery of the other sub-commands): benchmarks, tests."""
    parser = argparse.ArgumentParser(prog="smsflow")
    register(parser.add_subparsers())
    args = parser.parse_args(["sandbox", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(__import__("sys").argv[1:]))
