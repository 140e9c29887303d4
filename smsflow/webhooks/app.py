"""aiohttp application for Twilio webhooks and tracked-link redirects.

Routes:

* ``POST /twilio/inbound``: an inbound text. Published to role ``inbound`` keyed by the
  sender's E.164 number. Answers an empty TwiML ``<Response/>`` so Twilio sends nothing.
* ``POST /twilio/status``: a status callback. Published to role ``delivery`` keyed by
  ``MessageSid``, with the callback URL's query parameters (``ref``, ``c``: the send's
  idempotency key and customer id, which the dispatcher put there; a form field of the
  same name wins). Answers 204.
* ``GET /l/{code}``: a click on a link the engine minted: 302 to its target, 404 for
  anything ``resolve_link`` does not know (never an open redirect). HEAD (link previews)
  redirects without counting a click.
* ``GET /healthz`` (nothing personal: state and counts) and ``GET /metrics``.

Published record = every form field (each once) plus:

* ``received_at``: ISO-8601 UTC with milliseconds, stamped when this server first got
  the post (a journaled record keeps it);
* ``dedupe_id``: ``MessageSid`` for an inbound text, ``MessageSid:MessageStatus`` for a
  status callback: the same post replayed has the same id;
* ``provider_time``: Twilio's own time when it gives one; for status callbacks
  ``RawDlrDoneDate`` (``YYMMDDhhmm``) as ``YYYY-MM-DDThh:mm:00`` *without* a zone,
  because Twilio passes the carrier's done date through and its zone varies by carrier;
  null otherwise (inbound webhooks carry no provider time).

Order of checks, so that nothing we cannot read is ever a 500: body shape and size
(413/400, nothing published, see :mod:`~smsflow.webhooks.forms`), then
``X-Twilio-Signature`` against the *public* URL (``public_base_url`` + path + query,
what Twilio signed even behind a TLS-terminating proxy; 403, nothing published), then
content: repeated fields, missing ``MessageSid``/``From``/``MessageStatus`` or an
unreadable sender get 400 and a DLQ record with the reason (the post is Twilio's, so
nothing is lost). A signed post whose dedupe id this replica already made durable gets
the same 2xx again and is not republished (``seen``; see :mod:`~smsflow.webhooks.seen`:
the agents' dedupe stays the authority). Only once the record is durable (``publish``
returned: acked by Kafka or in the local journal) does Twilio get its 2xx; if it cannot
be made durable the answer is 503, and Twilio retries inbound texts.

No Faust and no Kafka here: the server injects ``publish(role, key, value)``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import orjson
from aiohttp import web
from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)

from smsflow.clock import Clock, iso
from smsflow.core.phones import InvalidPhone, to_e164
from smsflow.webhooks.forms import Rejected, as_record, query_params, read_form, repeated
from smsflow.webhooks.journal import SpoolFull
from smsflow.webhooks.links import LINK_CODE, is_web_url
from smsflow.webhooks.metrics import Metrics
from smsflow.privacy import mask_phone

log = logging.getLogger("smsflow.webhooks")

INBOUND = "inbound"
DELIVERY = "delivery"
DLQ = "dlq"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

Publish = Callable[[str, bytes | None, bytes], Awaitable[Any]]
ResolveLink = Callable[[str], "str | Mapping | None | Awaitable[str | Mapping | None]"]
OnClick = Callable[[str, dict], "Any | Awaitable[Any]"]


class SeenIds(Protocol):
    """What ``seen`` must offer (see :class:`smsflow.webhooks.seen.RecentIds`)."""

    def __contains__(self, dedupe_id: str) -> bool: ...
    def add(self, dedupe_id: str) -> None: ...


def create_webhook_app(*, auth_token: str, public_base_url: str, publish: Publish,
                       clock: Clock, resolve_link: ResolveLink | None = None,
                       on_click: OnClick | None = None, seen: SeenIds | None = None,
                       metrics: Metrics | None = None, max_body_bytes: int = 64 * 1024,
                       max_fields: int = 256,
                       health: Callable[[], dict] | None = None) -> web.Application:
    """Build the webhook application; every side effect goes through the callables."""
    metrics = metrics or Metrics()
    hooks = _Webhooks(RequestValidator(auth_token), public_base_url.rstrip("/"), publish,
                      resolve_link, on_click, clock, seen, metrics, max_body_bytes, max_fields,
                      health)
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_count(metrics)])
    app.add_routes([
        web.post("/twilio/inbound", hooks.inbound),
        web.post("/twilio/status", hooks.status),
        web.get("/l/{code}", hooks.click),
        web.get("/healthz", hooks.health),
        web.get("/metrics", hooks.metrics_page),
    ])
    return app


def _count(metrics: Metrics):
    @web.middleware
    async def count(request: web.Request, handler):
        route = _route(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.requests.labels(route=route, status=str(exc.status)).inc()
            raise
        except Exception:
            metrics.requests.labels(route=route, status="500").inc()
            log.exception("unexpected error on %s", route)
            raise
        metrics.requests.labels(route=route, status=str(response.status)).inc()
        return response
    return count


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class _Webhooks:
    def __init__(self, validator: RequestValidator, public_base_url: str, publish: Publish,
                 resolve_link: ResolveLink | None, on_click: OnClick | None, clock: Clock,
                 seen: SeenIds | None, metrics: Metrics, max_body_bytes: int, max_fields: int,
                 health: Callable[[], dict] | None) -> None:
        self.validator = validator
        self.public_base_url = public_base_url
        self.publish = publish
        self.resolve_link = resolve_link
        self.on_click = on_click
        self.clock = clock
        self.seen = seen
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_fields = max_fields
        self.health_extra = health
        self._inflight: dict[str, asyncio.Future] = {}

    # ------------------------------------------------------------------ routes

    async def inbound(self, request: web.Request) -> web.Response:
        route = "/twilio/inbound"
        try:
            form = await read_form(request, self.max_body_bytes, self.max_fields)
            self._verify(request, form)
        except Rejected as rejected:
            return self._refuse(route, rejected)
        record = self._stamp(as_record(form))
        duplicate = repeated(form)
        if duplicate:
            return await self._dead_letter(route, record, "malformed",
                                           f"malformed:duplicate_field:{duplicate}")
        missing = _missing(record, ("From", "MessageSid"))
        if missing:
            return await self._dead_letter(route, record, "missing_field",
                                           f"missing_field:{missing}")
        try:
            phone = to_e164(record["From"])
        except InvalidPhone as exc:
            return await self._dead_letter(route, record, "malformed", f"invalid_from:{exc.reason}")
        sid = record["MessageSid"]
        record.update(dedupe_id=sid, provider_time=None)
        if await self._publish_once(route, sid, INBOUND, phone, record):
            log.info("inbound %s from %s", sid, mask_phone(phone))
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def status(self, request: web.Request) -> web.Response:
        route = "/twilio/status"
        try:
            form = await read_form(request, self.max_body_bytes, self.max_fields)
            query = query_params(request, self.max_fields)
            self._verify(request, form)
        except Rejected as rejected:
            return self._refuse(route, rejected)
        record = as_record(form)
        for name, value in as_record(query).items():
            record.setdefault(name, value)
        record = self._stamp(record)
        duplicate = repeated(form) or repeated(query)
        if duplicate:
            return await self._dead_letter(route, record, "malformed",
                                           f"malformed:duplicate_field:{duplicate}")
        missing = _missing(record, ("MessageSid", "MessageStatus"))
        if missing:
            return await self._dead_letter(route, record, "missing_field",
                                           f"missing_field:{missing}")
        sid, status = record["MessageSid"], record["MessageStatus"]
        dedupe_id = f"{sid}:{status}"
        record.update(dedupe_id=dedupe_id,
                      provider_time=dlr_done_date(record.get("RawDlrDoneDate")))
        if await self._publish_once(route, dedupe_id, DELIVERY, sid, record):
            log.info("status %s %s to %s", sid, status, mask_phone(record.get("To")))
        return web.Response(status=204)

    async def click(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        link = None
        if self.resolve_link is not None and LINK_CODE.fullmatch(code):
            link = await _maybe_await(self.resolve_link(code))
        target = link.get("target") if isinstance(link, Mapping) else link
        if not is_web_url(target):
            raise web.HTTPNotFound(text="unknown link")
        if request.method == "GET":  # HEAD = a link preview, not a click
            self.metrics.clicks.inc()
            if self.on_click is not None:
                try:
                    info = self._click_info(request)
                    if isinstance(link, Mapping):
                        info["link"] = dict(link)
                    await _maybe_await(self.on_click(code, info))
                except Exception:  # a lost click record must not break the customer's click
                    log.exception("recording click on %s failed", code)
        raise web.HTTPFound(target)

    async def health(self, _request: web.Request) -> web.Response:
        body = {"status": "ok"}
        if self.health_extra is not None:
            body.update(self.health_extra())
        return web.json_response(body)

    async def metrics_page(self, _request: web.Request) -> web.Response:
        data, content_type = self.metrics.render()
        return web.Response(body=data, headers={"Content-Type": content_type})

    # ----------------------------------------------------------------- helpers

    def _verify(self, request: web.Request, form) -> None:
        """:class:`Rejected` (403) unless Twilio signed this URL and these fields."""
        url = self.public_base_url + request.raw_path
        signature = request.headers.get(SIGNATURE_HEADER, "")
        try:
            algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
            valid = bool(signature) and self.validator.validate(url, form, signature, algorithm)
        except Exception:  # noqa: BLE001 - whatever confuses the validator is not signed
            valid = False
        if not valid:
            log.warning("rejected unsigned or forged post to %s", request.path)
            raise Rejected(403, "signature", "invalid signature")

    def _refuse(self, route: str, rejected: Rejected) -> web.Response:
        self.metrics.reject(route, rejected.reason)
        return web.Response(status=rejected.status, text=rejected.detail)

    def _stamp(self, record: dict) -> dict:
        record["received_at"] = iso(self.clock.now(), "milliseconds")
        return record

    async def _dead_letter(self, route: str, record: dict, kind: str, reason: str) -> web.Response:
        """A signed post we cannot use: DLQ record with the reason, 400 (503 if not durable)."""
        sid = record.get("MessageSid")
        key = sid.encode() if isinstance(sid, str) and sid else None  # never a phone
        await self._publish(DLQ, key, {"reason": reason, "source": "webhook", "route": route,
                                       "record": record, "received_at": record["received_at"]},
                            route)
        self.metrics.reject(route, kind)
        log.warning("rejected post to %s: %s", route, reason)
        return web.Response(status=400, text=reason)

    async def _publish_once(self, route: str, dedupe_id: str, role: str, key: str,
                            record: dict) -> bool:
        """Publish unless this replica already made ``dedupe_id`` durable (then False).
        A replay that arrives while the first copy is still being published waits for it."""
        pending = self._inflight.get(dedupe_id)
        if pending is not None:
            try:
                await asyncio.shield(pending)
            except Exception as exc:  # noqa: BLE001 - the first copy failed: so do we
                raise web.HTTPServiceUnavailable(text="not durable, retry") from exc
        if pending is not None or (self.seen is not None and dedupe_id in self.seen):
            self.metrics.reject(route, "replay")
            return False
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved"
        self._inflight[dedupe_id] = future
        try:
            await self._publish(role, key.encode(), record, route)
            if self.seen is not None:
                try:
                    self.seen.add(dedupe_id)
                except Exception:  # noqa: BLE001 - the record is durable; forgetting is fine
                    log.exception("recording %s in the replay window failed", dedupe_id)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            raise
        finally:
            self._inflight.pop(dedupe_id, None)
        return True

    async def _publish(self, role: str, key: bytes | None, record: dict, route: str) -> None:
        """Durable or 503: Twilio sees the failure (and retries inbound) instead of a loss."""
        try:
            await self.publish(role, key, orjson.dumps(record))
        except SpoolFull as exc:
            self.metrics.reject(route, "spool_full")
            log.error("journal full: answering 503 to %s", route)
            raise web.HTTPServiceUnavailable(text="spool full, retry later") from exc
        except Exception as exc:
            log.exception("publishing to %s failed", role)
            raise web.HTTPServiceUnavailable(text="publish failed") from exc

    def _click_info(self, request: web.Request) -> dict:
        forwarded = request.headers.get("X-Forwarded-For", "")
        return {"clicked_at": self.clock.now(),
                "ip": forwarded.split(",")[0].strip() or request.remote,
                "user_agent": request.headers.get("User-Agent"),
                "referer": request.headers.get("Referer")}


def dlr_done_date(raw: object) -> str | None:
    """``RawDlrDoneDate`` (``YYMMDDhhmm``, the carrier's zone) -> ``YYYY-MM-DDThh:mm:00``."""
    if not isinstance(raw, str) or len(raw) != 10 or not raw.isdigit():
        return None
    try:
        return datetime.strptime(raw, "%y%m%d%H%M").isoformat()
    except ValueError:
        return None


def _missing(record: dict, fields: tuple[str, ...]) -> str | None:
    return next((name for name in fields
                 if not isinstance(record.get(name), str) or not record[name].strip()), None)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
