"""Twilio-shaped JSON: the Message resource, list pages and error bodies.

Shapes follow ``api.v2010.account.message`` in Twilio's OpenAPI description (strings for
``num_segments`` / ``num_media``, RFC 2822 dates, nullable fields present as null), so
the ``twilio`` package parses them as it parses Twilio's, and the contract test can hold
the sandbox to the spec.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import urlencode

API_VERSION = "2010-04-01"


def rfc2822(ts: float | None) -> str | None:
    """``Thu, 24 Aug 2023 05:01:45 +0000``, as Twilio writes dates."""
    return None if ts is None else format_datetime(datetime.fromtimestamp(ts, timezone.utc))


def message_uri(account_sid: str, sid: str, suffix: str = ".json") -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}{suffix}"


def message_json(r: dict) -> dict:
    uri = message_uri(r["account_sid"], r["sid"], "")
    return {
        "account_sid": r["account_sid"],
        "api_version": API_VERSION,
        "body": r["body"],
        "date_created": rfc2822(r["date_created"]),
        "date_sent": rfc2822(r.get("date_sent")),
        "date_updated": rfc2822(r["date_updated"]),
        "direction": r["direction"],
        "error_code": r.get("error_code"),
        "error_message": r.get("error_message"),
        "from": r["from"],
        "messaging_service_sid": r.get("messaging_service_sid"),
        "num_media": str(len(r.get("media_urls") or ())),
        "num_segments": str(r["num_segments"]),
        "price": None,
        "price_unit": "USD",
        "sid": r["sid"],
        "status": r["status"],
        "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        "to": r["to"],
        "uri": f"{uri}.json",
    }


def page_json(records: list[dict], account_sid: str, page: int, page_size: int,
              has_more: bool, filters: dict) -> dict:
    base = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"

    def uri(p: int) -> str:
        return f"{base}?{urlencode({**filters, 'PageSize': page_size, 'Page': p})}"

    start = page * page_size
    return {
        "messages": [message_json(r) for r in records],
        "end": start + max(len(records) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if has_more else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": uri(page),
    }


def error_json(code: int, message: str, status: int) -> dict:
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
