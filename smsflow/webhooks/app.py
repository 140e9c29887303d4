"""aiohttp application for Twilio webhooks and tracked-link redirects.

Routes:

* ``POST /twilio/inbound``: an inbound text. Published to role ``inbound`` keyed by the
  sender's E.164 number; the value is every form field plus ``received_at`` (ISO, UTC).
  Answers an empty TwiML ``<Response/>`` so Twilio sends nothing on its own.
* ``POST /twilio/status``: a status callback. Published to role ``delivery`` keyed by
  ``MessageSid``; the value is every form field, plus the callback URL's query parameters
  (``ref``, ``c``, ... which the dispatcher put there; a form field of the same name wins)
  and ``received_at``. Answers 204.
* ``GET /l/{code}``: a click on a link the engine minted: 302 to its target, 404 for
  anything ``resolve_link`` does not know (never an open redirect).
* ``GET /healthz``.

Both Twilio routes check ``X-Twilio-Signature`` against the *public* URL
(``public_base_url`` + path + query), which is what Twilio signed even when a proxy
terminates TLS in front of us; a missing or wrong signature gets 403 and publishes
nothing. A signed post without the fields we key on gets 400 and goes to role ``dlq``
with the reason, so nothing is lost. Phone numbers are masked in logs.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from twilio.request_validator import (SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER,
                                      RequestValidator, get_signature_algorithm)

from smsflow.clock import Clock
from smsflow.core.consent import iso
from smsflow.core.phones import InvalidPhone, mask, to_e164

log = logging.getLogger("smsflow.webhooks")

INBOUND = "inbound"
DELIVERY = "delivery"
DLQ = "dlq"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
LINK_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")

Publish = Callable[[str, bytes, bytes], Awaitable[Any]]
ResolveLink = Callable[[str], "str | None | Awaitable[str | None]"]
OnClick = Callable[[str, dict], "Any | Awaitable[Any]"]


def create_webhook_app(*, auth_token: str, public_base_url: str, publish: Publish,
                       resolve_link: ResolveLink | None = None,
                       on_click: OnClick | None = None, clock: Clock) -> web.Application:
    """Build the webhook application; every side effect goes through the callables."""
    hooks = _Webhooks(RequestValidator(auth_token), public_base_url.rstrip("/"), publish,
                      resolve_link, on_click, clock)
    app = web.Application()
    app.add_routes([
        web.post("/twilio/inbound", hooks.inbound),
        web.post("/twilio/status", hooks.status),
        web.get("/l/{code}", hooks.click),
        web.get("/healthz", hooks.health),
    ])
    return app


class _Webhooks:
    def __init__(self, validator: RequestValidator, public_base_url: str, publish: Publish,
                 resolve_link: ResolveLink | None, on_click: OnClick | None,
                 clock: Clock) -> None:
        self.validator = validator
        self.public_base_url = public_base_url
        self.publish = publish
        self.resolve_link = resolve_link
        self.on_click = on_click
        self.clock = clock

    async def inbound(self, request: web.Request) -> web.Response:
        record = await self._signed_record(request)
        missing = _missing(record, ("From", "MessageSid"))
        if missing:
            return await self._reject(request, record, f"missing_field:{missing}")
        try:
            phone = to_e164(record["From"])
        except InvalidPhone as exc:
            return await self._reject(request, record, f"invalid_from:{exc.reason}")
        await self._publish(INBOUND, phone, record)
        log.info("inbound %s from %s", record["MessageSid"], mask(phone))
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def status(self, request: web.Request) -> web.Response:
        record = await self._signed_record(request)
        for name, value in request.query.items():
            record.setdefault(name, value)
        missing = _missing(record, ("MessageSid", "MessageStatus"))
        if missing:
            return await self._reject(request, record, f"missing_field:{missing}")
        await self._publish(DELIVERY, record["MessageSid"], record)
        log.info("status %s %s to %s", record["MessageSid"], record["MessageStatus"],
                 mask(record.get("To")))
        return web.Response(status=204)

    async def click(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        target = None
        if self.resolve_link is not None and LINK_CODE.fullmatch(code):
            target = await _maybe_await(self.resolve_link(code))
        if not _is_web_url(target):
            raise web.HTTPNotFound(text="unknown link")
        if self.on_click is not None and request.method == "GET":  # HEAD = link preview
            try:
                await _maybe_await(self.on_click(code, self._click_info(request)))
            except Exception:  # a lost click record must not break the customer's click
                log.exception("recording click on %s failed", code)
        raise web.HTTPFound(target)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _signed_record(self, request: web.Request) -> dict:
        """The form as a JSON-ready dict plus ``received_at``; 403 unless Twilio signed it."""
        form = await request.post()
        url = self.public_base_url + request.raw_path
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature or not self.validator.validate(url, form, signature, algorithm):
            log.warning("rejected unsigned or forged post to %s", request.path)
            raise web.HTTPForbidden(text="invalid signature")
        record: dict = {}
        for name in form:
            values = [str(v) for v in form.getall(name)]
            record[name] = values[0] if len(values) == 1 else values
        record["received_at"] = iso(self.clock.now())
        return record

    async def _reject(self, request: web.Request, record: dict, reason: str) -> web.Response:
        key = record.get("MessageSid") or record.get("From") or ""
        await self._publish(DLQ, str(key), {"reason": reason, "source": "webhook",
                                            "route": request.path, "record": record,
                                            "received_at": record["received_at"]})
        log.warning("rejected post to %s: %s", request.path, reason)
        return web.Response(status=400, text=reason)

    async def _publish(self, role: str, key: str, record: dict) -> None:
        """Publish or answer 503, so Twilio sees the failure instead of a silent loss."""
        try:
            await self.publish(role, key.encode(), orjson.dumps(record))
        except Exception as exc:
            log.exception("publishing to %s failed", role)
            raise web.HTTPServiceUnavailable(text="publish failed") from exc

    def _click_info(self, request: web.Request) -> dict:
        forwarded = request.headers.get("X-Forwarded-For", "")
        return {"clicked_at": self.clock.now(),
                "ip": forwarded.split(",")[0].strip() or request.remote,
                "user_agent": request.headers.get("User-Agent"),
                "referer": request.headers.get("Referer")}


def _missing(record: dict, fields: tuple[str, ...]) -> str | None:
    return next((name for name in fields if not record.get(name)), None)


def _is_web_url(target: object) -> bool:
    if not isinstance(target, str):
        return False
    parts = urlsplit(target)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
