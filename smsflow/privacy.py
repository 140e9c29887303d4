"""Privacy guards of the worker and the webhook server: phone masking and the refusal to
start unsafely.

:func:`mask_phone` keeps the country calling code and the last two digits
(``+14155550199`` -> ``+1********99``): enough to tell two log lines apart, not enough
to text anyone; it is :func:`smsflow.core.phones.mask`, the rule the whole engine uses.

:class:`PhoneMaskFilter` is the safety net for log lines we do not write ourselves
(aiohttp, librdkafka, twilio): anything that looks like a phone number in a formatted
log message is masked the same way.

:func:`refusal` says why the server must not start: against a real Twilio (no sandbox
base URL) the public defaults ``sandbox-token`` / empty auth token and the link secret
``change-me`` are known to everyone, so a server using them would accept forged
webhooks (and mint guessable links).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from smsflow.core.phones import mask
from smsflow.streams.settings import Settings

DEFAULT_TOKENS = frozenset({"", "sandbox-token"})
DEFAULT_LINK_SECRETS = frozenset({"", "change-me"})
# E.164 as it travels: "+" (or URL-encoded "%2B") then 7-15 digits, not inside a longer word.
# Bare digit runs are left alone: they are far more often epochs, counts and offsets.
_PHONE_LIKE = re.compile(r"(?:\+|%2[Bb])(\d{7,15})(?!\w)")


def mask_phone(value: object) -> str:
    """``+<country code>``, one ``*`` per hidden digit, the last two digits (the engine's
    one masking rule, :func:`smsflow.core.phones.mask`)."""
    return mask(str(value) if value is not None else None)


def mask_text(text: str) -> str:
    """Every phone-looking run of digits in ``text`` masked with :func:`mask_phone`."""
    return _PHONE_LIKE.sub(lambda m: mask_phone(m.group(1)), text)


class PhoneMaskFilter(logging.Filter):
    """Masks phone-looking numbers in every record it sees (attach to handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break the request
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def is_real_twilio(settings: Settings) -> bool:
    """No sandbox base URL (or Twilio's own API host) means texts go through Twilio."""
    base = (settings.twilio_base_url or "").strip()
    if not base:
        return True
    host = (urlsplit(base).hostname or "").lower()
    return host == "twilio.com" or host.endswith(".twilio.com")


def refusal(settings: Settings) -> str | None:
    """One line saying why starting would be unsafe, or None."""
    if not is_real_twilio(settings):
        return None
    if (settings.twilio_auth_token or "").strip() in DEFAULT_TOKENS:
        return ("refusing to start against the real Twilio with an empty or default auth token: "
                "set SMSFLOW_TWILIO_AUTH_TOKEN (or SMSFLOW_TWILIO_BASE_URL for the sandbox)")
    if (settings.link_secret or "").strip() in DEFAULT_LINK_SECRETS:
        return ("refusing to start against the real Twilio with the default link secret: "
                "set SMSFLOW_LINK_SECRET to a long random value")
    return None
