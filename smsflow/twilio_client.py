"""Sending through the official ``twilio`` package, asynchronously, without hidden retries.

:class:`TwilioSender` drives ``twilio.rest.Client`` with :class:`TwilioAsyncHttp`, an
aiohttp-based HTTP client for the package that (1) keeps one pooled session, (2) applies
a hard timeout to every call (the package's own async client ignores its ``timeout``),
(3) never retries (the package's retry wrapper re-POSTs on 5xx, which can send an SMS
twice; the dispatcher retries through :mod:`smsflow.core.retry` instead) and (4) can
rewrite ``https://api.twilio.com`` to a local base URL, the sandbox's.

Reconciliation. Twilio has no idempotency key for Messages, and a Message resource does
not echo its ``StatusCallback``. So the idempotency key travels in the status callback
URL (``?ref=KEY&c=CUSTOMER``), which makes every receipt self-identifying, and
:meth:`TwilioSender.find_by_idempotency` looks an ambiguous send up the only way the API
allows: the newest messages to that phone, matched on the exact body and a creation time
no earlier than the first attempt. The sandbox serves the same list API, so the same
code path is exercised in tests. Limits: two identical bodies to one phone within the
window are indistinguishable, and Twilio features that rewrite the body (link
shortening, smart encoding) defeat the match; callers pass the body they sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from smsflow.core.retry import Classification, classify
from smsflow.core.segments import analyze

_logger = logging.getLogger("smsflow.twilio")
TWILIO_HOST = re.compile(r"^https://[A-Za-z0-9.-]*\.twilio\.com")
RECONCILE_SKEW = 120.0  # seconds of clock difference tolerated between us and Twilio
AUTH_STATUSES = {401, 403}
AUTH_CODES = {20003, 20005}  # authenticate / account not active
# The last response's Retry-After, per task: twilio-python's exceptions drop the headers.
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar("retry_after",
                                                                          default=None)


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare at Twilio and read as None)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 3600 else None


def _pairs(data: Mapping | None) -> list[tuple[str, str]]:
    """Form/query pairs; list values become repeated keys (``MediaUrl=a&MediaUrl=b``)."""
    pairs = []
    for key, value in (data or {}).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None:
                pairs.append((key, str(item)))
    return pairs


class TwilioAsyncHttp(AsyncHttpClient):
    """The ``twilio`` package's async HTTP client contract over one aiohttp session."""

    def __init__(self, base_url: str | None = None, timeout: float = 10.0, pool_size: int = 100) -> None:
        super().__init__(_logger, True, timeout)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _client_session(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp sessions must be built inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool_size),
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def request(self, method: str, url: str, params: Mapping | None = None,
                      data: Mapping | None = None, headers: Mapping | None = None,
                      auth: tuple[str, str] | None = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Response:
        if self.base_url:
            url = TWILIO_HOST.sub(self.base_url, url, count=1)
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        body = None
        if data:
            body = urlencode(_pairs(data)).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        async with self._client_session().request(
                method.upper(), url, params=_pairs(params) or None, data=body, headers=headers,
                allow_redirects=allow_redirects,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as resp:
            _retry_after.set(_parse_retry_after(resp.headers.get("Retry-After")))
            return Response(resp.status, await resp.text(), resp.headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class SendResult:
    """One create (or lookup) outcome.

    ``status`` is Twilio's message status, or ``error`` (Twilio answered an error), or
    the transport ``failure``: ``connect`` (nothing sent), ``timeout`` / ``disconnect``
    (maybe sent). ``segments`` and ``encoding`` are computed locally before sending;
    ``provider_segments`` is what Twilio reported (None when it did not say).
    ``retry_after`` is the answer's Retry-After header in seconds, if any.
    """

    sid: str | None
    status: str
    error_code: int | None
    http_status: int | None
    segments: int
    encoding: str = "GSM-7"
    error_message: str | None = None
    failure: str | None = None
    provider_segments: int | None = None
    retry_after: float | None = None

    def classify(self) -> Classification:
        return classify(self.http_status, self.error_code, self.failure)

    @property
    def auth_failed(self) -> bool:
        """Bad or rotated credentials: no message can go out until they work again."""
        return self.http_status in AUTH_STATUSES or self.error_code in AUTH_CODES


class TwilioLookupError(RuntimeError):
    """The reconciliation lookup itself failed; try it again later, do not resend."""


def status_callback_url(base: str, idempotency_key: str | None, customer_id: str | None = None) -> str:
    """``base?ref=KEY&c=CUSTOMER``: receipts then name the send they belong to."""
    query = urlencode([(k, v) for k, v in (("ref", idempotency_key), ("c", customer_id)) if v], safe=":")
    if not query:
        return base
    return f"{base}{'&' if '?' in base else '?'}{query}"


def _transport_failure(exc: BaseException) -> str:
    if isinstance(exc, (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError)):
        return "connect"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    return "disconnect"


class TwilioSender:
    """Async Messages API calls for the dispatcher; one instance per process is enough."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str | None = None,
                 timeout: float = 10.0, pool_size: int = 100, edge: str | None = None,
                 region: str | None = None) -> None:
        self.http = TwilioAsyncHttp(base_url, timeout, pool_size)
        # environment={} so TWILIO_EDGE / TWILIO_REGION never mangle a sandbox base URL.
        self.client = Client(account_sid, auth_token, http_client=self.http, environment={},
                             edge=None if base_url else edge, region=None if base_url else region)

    async def send(self, to: str, from_: str, body: str | None,
                   media_urls: Sequence[str] = (), status_callback: str | None = None,
                   idempotency_key: str | None = None, customer_id: str | None = None) -> SendResult:
        """Create one message. Never raises for Twilio or network errors: see ``SendResult``.

        ``from_`` may be a number, a short code or a Messaging Service SID (``MG...``).
        """
        encoding, segments, _ = analyze(body or "")
        kwargs = {"to": to, "body": body or None, "media_url": list(media_urls) or None}
        kwargs["messaging_service_sid" if from_.startswith("MG") else "from_"] = from_
        if status_callback:
            kwargs["status_callback"] = status_callback_url(status_callback, idempotency_key,
                                                            customer_id)
        _retry_after.set(None)
        try:
            msg = await self.client.messages.create_async(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            code = exc.code if exc.code != exc.status else None
            return SendResult(None, "error", code, exc.status, segments, encoding,
                              getattr(exc, "msg", None) or getattr(exc, "title", None),
                              retry_after=_retry_after.get())
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            failure = _transport_failure(exc)
            return SendResult(None, failure, None, None, segments, encoding, repr(exc), failure)
        return self._result(msg, encoding, segments, 201)

    async def fetch(self, sid: str) -> SendResult:
        """The message's current state (raises the package's exceptions: tests and tools)."""
        msg = await self.client.messages(sid).fetch_async()
        encoding, segments, _ = analyze(msg.body or "")
        return self._result(msg, encoding, segments, 200)

    async def find_by_idempotency(self, key: str, *, to: str, body: str, since: float,
                                  limit: int = 50) -> SendResult | None:
        """The message an ambiguous attempt may have created, or None (safe to resend).

        ``since``: epoch time of the first attempt for ``key``. See the module
        docstring for how the match works and its limits; ``key`` is logged only.
        """
        try:
            recent = await self.client.messages.list_async(to=to, limit=limit)
        except (TwilioException, aiohttp.ClientError, asyncio.TimeoutError, TimeoutError,
                ValueError) as exc:  # TwilioException: a failed page of the list
            raise TwilioLookupError(f"lookup failed: {type(exc).__name__}") from exc
        for msg in recent:  # newest first
            created = msg.date_created.timestamp() if msg.date_created else None
            if (msg.body == body and str(msg.direction or "").startswith("outbound")
                    and created is not None and created >= since - RECONCILE_SKEW):
                encoding, segments, _ = analyze(body or "")
                _logger.info("reconciled %s as %s", key, msg.sid)
                return self._result(msg, encoding, segments, 200)
        return None

    @staticmethod
    def _result(msg, encoding: str, segments: int, http_status: int) -> SendResult:
        try:
            reported = int(msg.num_segments or 0) or None
        except (TypeError, ValueError):
            reported = None
        return SendResult(msg.sid, str(msg.status), msg.error_code, http_status, segments,
                          encoding, msg.error_message, provider_segments=reported)

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> TwilioSender:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
