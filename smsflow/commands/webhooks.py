"""``smsflow webhooks``: serve Twilio inbound/status callbacks and link redirects.

Binds 127.0.0.1 unless told otherwise (``--host`` or ``SMSFLOW_WEBHOOK_HOST``): the
server is meant to sit behind a TLS-terminating proxy. Refuses to start (exit code 2,
one line on stderr) against the real Twilio with a default secret, or on a state folder
another replica holds. SIGTERM and SIGINT stop it cleanly (requests in flight finish,
the journal is flushed).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys


def register(sub) -> None:
    p = sub.add_parser("webhooks", help="serve Twilio webhooks and tracked-link redirects")
    p.add_argument("--host", default=None,
                   help="bind address (default SMSFLOW_WEBHOOK_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default SMSFLOW_WEBHOOK_PORT (8080)")
    p.set_defaults(func=run)


def setup_logging(level: str = "info") -> None:
    """Plain lines on stderr, phones masked in every one of them (ours or a library's)."""
    from smsflow.webhooks.privacy import PhoneMaskFilter

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(PhoneMaskFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def run(args) -> int:
    from smsflow.streams.settings import Settings
    from smsflow.webhooks.privacy import refusal
    from smsflow.webhooks.server import StateInUse, serve
    from smsflow.webhooks.settings import WebhookSettings

    try:
        settings = Settings.from_env()
        ws = WebhookSettings.from_env(settings)
    except ValueError as exc:
        print(f"smsflow webhooks: {exc}", file=sys.stderr)
        return 2
    reason = refusal(settings)
    if reason:
        print(f"smsflow webhooks: {reason}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, ws, args.host, args.port, stop)

    try:
        asyncio.run(main())
    except StateInUse as exc:
        print(f"smsflow webhooks: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, the folder is not writable, ...
        print(f"smsflow webhooks: {exc}", file=sys.stderr)
        return 1
    return 0
