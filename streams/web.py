"""Worker HTTP endpoints on Faust's web server: Prometheus metrics and a health check."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smsflow.streams.runtime import Runtime


def register(rt: Runtime) -> None:
    app = rt.app

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "ok", "rebalancing": bool(app.rebalancing),
                         "in_recovery": bool(getattr(app, "in_recovery", False))})
