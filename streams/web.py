"""Worker HTTP endpoints on Faust's web server: metrics, liveness and readiness.

``/livez`` (and ``/healthz``) answers as long as the event loop does: it is served during
a long state restore too, so an orchestrator does not kill a worker that is recovering.
``/readyz`` answers 200 only when partitions are assigned and state is recovered, 503
otherwise. Nothing here reveals personal data; Faust's table views are disabled.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smsflow.streams import metrics
from smsflow.streams.runtime import Runtime


def ready(app: Any) -> bool:
    return bool(metrics.WORKER_READY._value.get()) and not app.rebalancing  # noqa: SLF001


def register(rt: Runtime) -> None:
    app = rt.app

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "ready": ready(app),
                         "rebalancing": bool(app.rebalancing),
                         "in_recovery": bool(getattr(app, "in_recovery", False))})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        is_ready = ready(app)
        return web.json({"ready": is_ready}, status=200 if is_ready else 503)
