"""Signed webhook posts from the sandbox: status callbacks and inbound texts.

Receipts go through a bounded queue drained by a few workers sharing one aiohttp
session, so the create handler only schedules work and a slow webhook cannot make the
sandbox grow without bound: when the queue is full the receipt is dropped and counted.
Signatures are Twilio's (``RequestValidator.compute_signature`` over the exact URL and
the form parameters), so the engine's webhook check runs unchanged against the sandbox.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from urllib.parse import urlencode

import aiohttp
import yarl
from twilio.request_validator import RequestValidator

_logger = logging.getLogger("smsflow.sandbox")


class CallbackPoster:
    def __init__(self, auth_token: str, workers: int = 16, maxsize: int = 10_000,
                 timeout: float = 5.0) -> None:
        self.validator = RequestValidator(auth_token)
        self.workers, self.timeout = workers, timeout
        self.queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue(maxsize)
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._ids = itertools.count(1)
        self.stats = {"posted": 0, "failed": 0, "dropped": 0}

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(  # lean: no cookies, no decompression
            connector=aiohttp.TCPConnector(limit=self.workers * 2), cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        return self.validator.compute_signature(url, params)

    def enqueue(self, url: str, params: dict) -> None:
        """Queue a post without waiting; a full queue drops it (counted in ``stats``)."""
        try:
            self.queue.put_nowait((url, params))
        except asyncio.QueueFull:
            self.stats["dropped"] += 1

    async def post(self, url: str, params: dict) -> int:
        """POST ``params`` form-encoded to ``url`` with ``X-Twilio-Signature``; the HTTP status."""
        headers = {"X-Twilio-Signature": self.sign(url, params),
                   "I-Twilio-Idempotency-Token": f"sandbox-{next(self._ids)}",
                   "Content-Type": "application/x-www-form-urlencoded",
                   "User-Agent": "TwilioProxy/1.1 (smsflow sandbox)"}
        body = urlencode(params).encode()  # much cheaper than aiohttp's FormData
        # the exact URL that was signed, as Twilio sends it: yarl would otherwise normalise
        # its escapes (%2C -> ","), and the receiver's signature check would fail
        async with self.session.post(yarl.URL(url, encoded=True), data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def drain(self) -> None:
        """Wait until every queued post has been attempted (tests and shutdown)."""
        await self.queue.join()

    async def _work(self) -> None:
        while True:
            url, params = await self.queue.get()
            try:
                status = await self.post(url, params)
                self.stats["posted" if status < 400 else "failed"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self.stats["failed"] += 1
                _logger.debug("callback to %s failed: %r", url, exc)
            finally:
                self.queue.task_done()
