"""Tracked links: UTM parameters and short codes the engine mints.

A short code is derived from the send's idempotency key with an HMAC, so minting is
deterministic (a retried step mints the same link) and codes cannot be guessed. The
redirect endpoint serves only codes found in the minted-links store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from smsflow.core.records.sends import Link

CODE_LENGTH = 10


def with_utm(url: str, *, campaign: str, content: str, source: str = "smsflow",
             medium: str = "sms") -> str:
    """Return ``url`` with utm_source/medium/campaign/content set (existing UTMs are kept)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name, value in (("utm_source", source), ("utm_medium", medium),
                        ("utm_campaign", campaign), ("utm_content", content)):
        query.setdefault(name, value)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def short_code(idempotency_key: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), idempotency_key.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:CODE_LENGTH]


def mint(target: str, *, flow_id: str, step_id: str, idempotency_key: str,
         public_base_url: str, secret: str) -> Link:
    """Mint the tracked link of one send: the UTM-tagged target and its short URL."""
    tracked = with_utm(target, campaign=flow_id, content=step_id)
    code = short_code(idempotency_key, secret)
    return Link(target=tracked, short=f"{public_base_url.rstrip('/')}/l/{code}")


def code_of(short: str) -> str:
    """The short code at the end of a minted short URL."""
    return short.rsplit("/", 1)[-1]


# Characters a URI may carry as they are (RFC 3986 reserved + unreserved) and "%" of
# escapes already present; everything else (spaces, quotes, non-ASCII) is escaped.
_URI_SAFE = "-._~:/?#[]@!$&'()*+,;=%"


def safe_url(url: str) -> str:
    """A template-filled URL made a valid URI ("…/Face Cream.jpg" -> "…/Face%20Cream.jpg").

    Existing percent-escapes are kept; a stray "%" that starts no escape is escaped.
    """
    url = url.strip()
    if not url:
        return url
    fixed = []
    for i, ch in enumerate(url):
        if ch == "%" and not _is_escape(url[i + 1:i + 3]):
            fixed.append("%25")
        else:
            fixed.append(ch)
    return quote("".join(fixed), safe=_URI_SAFE)


def _is_escape(two: str) -> bool:
    return len(two) == 2 and all(c in "0123456789abcdefABCDEF" for c in two)
