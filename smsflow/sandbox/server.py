"""A local Twilio-compatible Messages API (aiohttp), for tests, the demo and benchmarks.

It answers the calls the ``twilio`` package makes (create, fetch, list by ``To``) with
Twilio's status codes, error bodies and JSON shapes, checks Basic auth, records every
message, posts signed status callbacks (sent -> delivered / undelivered) after a delay,
simulates inbound replies to the engine's webhook, and injects faults (see
:mod:`smsflow.sandbox.faults`). The create handler only validates, records and
schedules; all webhook traffic leaves through :class:`CallbackPoster`'s bounded queue.

Extra endpoints (not Twilio's): ``GET /sandbox/messages?since=&limit=&to=&ref=&direction=``,
``POST /sandbox/inbound {from, to, body}``, ``GET /sandbox/stats``,
``POST /sandbox/config {fault_rate, faults, receipt_delay, timeout_hold}``, ``POST /sandbox/reset``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web

from smsflow.core.segments import analyze
from smsflow.sandbox.callbacks import CallbackPoster
from smsflow.sandbox.faults import KNOWN_FAULTS, FaultInjector, parse_faults
from smsflow.sandbox.resources import API_VERSION, error_json, message_json, page_json
from smsflow.sandbox.store import MessageStore, new_sid

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Twilio's own whole-body keyword handling (twilio.md §4), not the engine's richer matcher.
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
START_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO"}
KEYWORDS = {"STOP": STOP_WORDS, "START": START_WORDS, "HELP": HELP_WORDS}  # -> OptOutType
# Twilio test-credential magic numbers (twilio.md §2.2).
MAGIC_TO = {"+15005550001": 21211, "+15005550002": 21612, "+15005550003": 21408,
            "+15005550004": 21610, "+15005550009": 21614}
MAGIC_FROM = {"+15005550001": 21212, "+15005550007": 21606, "+15005550008": 21611}
MESSAGES = {
    20003: "Authenticate", 20404: "The requested resource was not found",
    20429: "Too Many Requests", 20500: "Internal Server Error",
    21211: "The 'To' number is not a valid phone number.",
    21212: "The 'From' number is not a valid phone number, shortcode, or alphanumeric sender ID.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21602: "Message body is required.", 21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: "The 'From' phone number provided is not a valid message-capable Twilio phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21612: "The 'To' phone number is not currently reachable via SMS",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21623: "Number of media files exceeds allowed limit (verify code)",
}


PROVIDER_REPLIES = {  # Twilio's default keyword answers
    "STOP": "You have successfully been unsubscribed. You will not receive any more messages "
            "from this number. Reply START to resubscribe.",
    "START": "You have successfully been re-subscribed to messages from this number. Reply HELP "
             "for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "HELP": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}


@dataclass
class SandboxConfig:
    account_sid: str
    auth_token: str
    webhook_base: str | None = None  # inbound replies go to {webhook_base}/twilio/inbound
    fault_rate: float = 0.0
    faults: tuple[str, ...] = KNOWN_FAULTS
    receipt_delay: float = 0.2  # seconds to "sent"; the final status follows after as long again
    timeout_hold: float = 30.0  # how long a "timeout" fault holds the answer
    seed: int | None = None
    max_records: int = 200_000
    callback_workers: int = 16
    callback_queue: int = 10_000
    record_raw: bool = False  # keep raw API exchanges in Sandbox.raw (contract tests)


class Sandbox:
    """State and handlers of one sandbox; :meth:`app` builds the aiohttp application."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = MessageStore(config.max_records)
        self.faults = FaultInjector(config.fault_rate, config.faults, config.seed)
        self.poster = CallbackPoster(config.auth_token, config.callback_workers, config.callback_queue)
        self.counts: Counter[str] = Counter()
        self.raw: list[dict] = []
        self._auth = "Basic " + base64.b64encode(
            f"{config.account_sid}:{config.auth_token}".encode()).decode()
        self._closing = asyncio.Event()

    # ------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_raw] if self.config.record_raw else [])
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        app.router.add_post(f"{base}/Messages.json", self.create)
        app.router.add_get(f"{base}/Messages.json", self.list)
        app.router.add_get(base + "/Messages/{sid:[A-Za-z0-9]+}.json", self.fetch)
        app.router.add_get("/sandbox/messages", self.recorded)
        app.router.add_post("/sandbox/inbound", self.inbound)
        app.router.add_get("/sandbox/stats", self.stats)
        app.router.add_post("/sandbox/config", self.configure)
        app.router.add_post("/sandbox/reset", self.reset)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)
        return app

    async def _start(self, _app) -> None:
        await self.poster.start()

    async def _stop(self, _app) -> None:
        self._closing.set()
        await self.poster.stop()

    @web.middleware
    async def _record_raw(self, request: web.Request, handler) -> web.StreamResponse:
        body = await request.read()
        response = await handler(request)
        self.raw.append({"method": request.method, "path": request.path,
                         "query": request.query_string, "headers": dict(request.headers),
                         "body": body, "status": response.status,
                         "content_type": response.content_type, "response": response.body})
        return response

    # ------------------------------------------------------------ Twilio API

    def _error(self, code: int, status: int) -> web.Response:
        self.counts[f"error_{code}"] += 1
        return self._json(error_json(code, MESSAGES.get(code, "Error"), status), status)

    @staticmethod
    def _json(payload, status: int = 200) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")

    def _refuse(self, request: web.Request) -> web.Response | None:
        """401 without valid Basic auth; 404 for another account's URL (as Twilio)."""
        if request.headers.get("Authorization") != self._auth:
            return self._error(20003, 401)
        if request.match_info["account_sid"] != self.config.account_sid:
            return self._error(20404, 404)
        return None

    def _problem(self, to: str, from_: str, service: str, body: str, media: list[str]) -> int | None:
        """The Twilio error code for an invalid create request, or None."""
        if not to:
            return 21604
        if not from_ and not service:
            return 21603
        if not body and not media:
            return 21602
        if len(body) > 1600:
            return 21617
        if len(media) > 10:
            return 21623
        if not E164.match(to) or to == from_:
            return 21211
        if to in MAGIC_TO:
            return MAGIC_TO[to]
        if from_ in MAGIC_FROM:
            return MAGIC_FROM[from_]
        if self.faults.stop_blocks and to in self.store.opted_out:
            return 21610
        return None

    async def create(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        form = await request.post()
        fault = self.faults.pick()
        if fault:
            self.counts[f"fault_{fault}"] += 1
        if fault == "429":
            return self._error(20429, 429)
        if fault == "500":
            return self._error(20500, 500)
        to, from_ = form.get("To", ""), form.get("From", "")
        service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
        media = form.getall("MediaUrl", [])
        code = self._problem(to, from_, service, body, media)
        if code:
            return self._error(code, 400)
        # With only a Messaging Service, Twilio answers "accepted" and "0" segments (no sender yet).
        pooled = bool(service and not from_)
        record = self._record("outbound-api", to, from_, body, "accepted" if pooled else "queued",
                              media, service, form.get("StatusCallback"))
        response = self._json({**message_json(record), **({"num_segments": "0"} if pooled else {})}, 201)
        self._schedule_receipts(record, 30007 if fault == "30007" else None)
        if fault == "timeout":
            try:  # the message exists; only the answer is late (or never comes)
                await asyncio.wait_for(self._closing.wait(), self.config.timeout_hold)
            except asyncio.TimeoutError:
                pass
        return response

    def _record(self, direction: str, to: str, from_: str | None, body: str, status: str,
                media: list[str] = (), service: str | None = None,
                callback: str | None = None) -> dict:
        now, analysis = time.time(), analyze(body)
        query = parse_qs(urlsplit(callback).query) if callback else {}
        self.counts[direction] += 1
        return self.store.add({
            "sid": new_sid("MM" if media else "SM"), "account_sid": self.config.account_sid,
            "direction": direction, "to": to, "from": from_ or None,
            "messaging_service_sid": service or None, "body": body, "media_urls": list(media),
            "status": status, "num_segments": analysis.segments, "encoding": analysis.encoding,
            "status_callback": callback, "ref": (query.get("ref") or [None])[0],
            "customer": (query.get("c") or [None])[0], "error_code": None, "error_message": None,
            "date_created": now, "date_updated": now,
            "date_sent": now if direction == "inbound" else None,
        })

    def _schedule_receipts(self, record: dict, error_code: int | None) -> None:
        loop, delay, sid = asyncio.get_running_loop(), self.config.receipt_delay, record["sid"]
        loop.call_later(delay, self._transition, sid, "sent", None)
        final = "undelivered" if error_code else "delivered"
        loop.call_later(2 * delay, self._transition, sid, final, error_code)

    def _transition(self, sid: str, status: str, error_code: int | None) -> None:
        record = self.store.get(sid)
        if record is None:  # evicted or reset
            return
        now = time.time()
        record.update(status=status, date_updated=now, error_code=error_code,
                      error_message="Message filtered" if error_code == 30007 else None)
        if status == "sent":
            record["date_sent"] = now
        if record["status_callback"]:
            self.poster.enqueue(record["status_callback"], self._callback_params(record))

    def _callback_params(self, r: dict) -> dict:
        params = {"AccountSid": r["account_sid"], "ApiVersion": API_VERSION,
                  "From": r["from"] or "", "To": r["to"], "MessageSid": r["sid"],
                  "SmsSid": r["sid"], "MessageStatus": r["status"], "SmsStatus": r["status"]}
        if r["messaging_service_sid"]:
            params["MessagingServiceSid"] = r["messaging_service_sid"]
        if r["error_code"]:
            params["ErrorCode"] = str(r["error_code"])
        if r["status"] in ("delivered", "undelivered"):
            done = datetime.fromtimestamp(r["date_updated"], timezone.utc)
            params["RawDlrDoneDate"] = done.strftime("%y%m%d%H%M")
        return params

    async def fetch(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        record = self.store.get(request.match_info["sid"])
        return self._json(message_json(record)) if record else self._error(20404, 404)

    async def list(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        q = request.query
        size = max(1, min(int(q.get("PageSize", 50)), 1000))
        page = max(0, int(q.get("Page", 0)))
        rows = list(islice(self.store.newest(q.get("To"), q.get("From")),
                           page * size, (page + 1) * size + 1))
        filters = {k: q[k] for k in ("To", "From") if k in q}
        return self._json(page_json(rows[:size], self.config.account_sid, page, size,
                                    len(rows) > size, filters))

    # ------------------------------------------------------------ sandbox extras

    async def recorded(self, request: web.Request) -> web.Response:
        q = request.query
        direction = q.get("direction", "outbound-api")
        rows = self.store.since(float(q.get("since", 0)), int(q.get("limit", 1000)), q.get("to"),
                                q.get("ref"), None if direction == "all" else direction)
        return self._json({"messages": rows, "count": len(rows)})

    async def inbound(self, request: web.Request) -> web.Response:
        """Simulate a text from a phone to one of our numbers, posted signed to the webhook."""
        is_json = request.content_type == "application/json"
        data = await request.json() if is_json else await request.post()
        phone, ours, body = data.get("from", ""), data.get("to", ""), data.get("body", "")
        if not E164.match(phone) or not ours:
            return self._json({"error": "from (E.164) and to are required"}, 400)
        word = body.strip().upper()
        # With the 21610 fault on, the sandbox manages opt-outs like a Twilio number with
        # opt-out management: it blocks, answers the keyword itself and says so in
        # OptOutType. Without it, keywords are left to the application (smsflow replies).
        managed = self.faults.stop_blocks
        opt = next((kind for kind, words in KEYWORDS.items() if word in words), None) if managed else None
        if opt == "STOP":
            self.store.opted_out.add(phone)
        elif opt == "START":
            self.store.opted_out.discard(phone)
        record = self._record("inbound", ours, phone, body, "received")
        if opt:
            self._record("outbound-reply", phone, ours, PROVIDER_REPLIES[opt], "delivered")
        sid = record["sid"]
        params = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                  "AccountSid": self.config.account_sid, "From": phone, "To": ours, "Body": body,
                  "NumMedia": "0", "NumSegments": str(max(1, record["num_segments"])),
                  "SmsStatus": "received", "ApiVersion": API_VERSION}
        if opt:
            params["OptOutType"] = opt
        status = None
        if self.config.webhook_base:
            url = self.config.webhook_base.rstrip("/") + "/twilio/inbound"
            status = await self.poster.post(url, params)
        return self._json({"sid": sid, "webhook_status": status, "opt_out_type": opt})

    async def stats(self, _request: web.Request) -> web.Response:
        return self._json({"messages": len(self.store), "opted_out": len(self.store.opted_out),
                           "counts": dict(self.counts), "callbacks": self.poster.stats,
                           "callback_queue": self.poster.queue.qsize(), "config": self._config_view()})

    def _config_view(self) -> dict:
        return {"fault_rate": self.faults.rate, "faults": list(self.faults.faults),
                "receipt_delay": self.config.receipt_delay, "timeout_hold": self.config.timeout_hold}

    async def configure(self, request: web.Request) -> web.Response:
        data = await request.json()
        try:
            self.faults.configure(float(data.get("fault_rate", self.faults.rate)),
                                  parse_faults(data.get("faults", self.faults.faults)))
        except ValueError as exc:
            return self._json({"error": str(exc)}, 400)
        for key in ("receipt_delay", "timeout_hold"):
            if key in data:
                setattr(self.config, key, float(data[key]))
        return self._json(self._config_view())

    async def reset(self, _request: web.Request) -> web.Response:
        self.store.clear()
        self.counts.clear()
        self.raw.clear()
        return self._json({"ok": True})


@dataclass
class SandboxHandle:
    """A running sandbox: ``url`` is the base URL to give :class:`TwilioSender`."""

    sandbox: Sandbox
    runner: web.AppRunner
    url: str

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_sandbox(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> SandboxHandle:
    """Start a sandbox in the running event loop (``port=0``: a free port)."""
    sandbox = Sandbox(config)
    runner = web.AppRunner(sandbox.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return SandboxHandle(sandbox, runner, f"http://{bound_host}:{bound_port}")


async def serve(config: SandboxConfig, host: str, port: int) -> None:
    """Run until cancelled (the CLI)."""
    handle = await start_sandbox(config, host, port)
    print(f"smsflow sandbox listening on {handle.url} (account {config.account_sid})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await handle.close()
