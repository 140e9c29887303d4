"""The consent ledger of one phone: current consent, pending double opt-in, linked
customers and an audit history, as a plain JSON dict (the phones agent stores it in a
table keyed by the E.164 phone).

Ledger shape (all times are epoch seconds, UTC, as floats)::

    {"status": "subscribed" | "unsubscribed" | "never",
     "source": "checkout" | "keyword" | "provider_keyword" | "provider" | ... | None,
     "timestamp": event time the current status is effective from (never moves back),
     "keyword": "STOP" | "START" | "Y" | ... | None,   # keyword that set the status
     "text": consent text or inbound body (<= 1600 chars) | None,
     "text_hash": sha256 hex of the full text | None,
     "updated_at": processing time of the last change (from the caller's clock),
     "pending": None | {"source", "timestamp", "text", "text_hash", "customer_id",
                        "requested_at"},          # double opt-in awaiting "Y"
     "customers": {customer_id: {"linked": bool, "at": event time}},
     "history": [entry, ...],  # oldest first, at most HISTORY_LIMIT entries
     "history_dropped": int}   # entries dropped from the front to respect the limit

Changes are dicts too, built by the ``*_change`` helpers below (or received on the
phone-updates topic in the same shape) and applied with :func:`apply`. Rules:

* a change older than the current status (by event time) does not overwrite it; it is
  kept in the history as ``ignored_stale``; on a tie an opt-out wins;
* an opt-out by keyword or by the provider is applied at once whatever its timestamp;
* marketing needs ``subscribed``; transactional needs "not unsubscribed" (:func:`may_send`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import datetime, timezone

from smsflow.clock import iso  # noqa: F401  (part of this module's API)
from smsflow.core import keywords

SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
NEVER = "never"
TRAIT_STATUSES = {SUBSCRIBED, UNSUBSCRIBED}

MARKETING = "marketing"
TRANSACTIONAL = "transactional"

# Outcome kinds returned by apply(); named like the outcome records analysts read.
OPTED_OUT = "opted_out"
OPTED_IN = "opted_in"
HELP_REQUESTED = "help_requested"
CONFIRMATION_REQUESTED = "confirmation_requested"
REPLY_OUTCOMES = {OPTED_OUT, OPTED_IN, HELP_REQUESTED}

SOURCE_KEYWORD = "keyword"
SOURCE_PROVIDER_KEYWORD = "provider_keyword"
SOURCE_PROVIDER = "provider"

HISTORY_LIMIT = 200
TEXT_LIMIT = 1600


class InvalidConsent(ValueError):
    """A change that cannot be applied; ``reason`` is a short code for the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- ledger


def new_ledger() -> dict:
    """The ledger of a phone we know nothing about (status ``never``)."""
    return {"status": NEVER, "source": None, "timestamp": None, "keyword": None,
            "text": None, "text_hash": None, "updated_at": None, "pending": None,
            "customers": {}, "history": [], "history_dropped": 0}


def is_pending(ledger: dict | None) -> bool:
    """True while a double opt-in waits for its "Y" reply."""
    return bool(ledger and ledger.get("pending"))


def linked_customers(ledger: dict | None) -> list[str]:
    """Customer ids currently sharing this phone (an opt-out concerns all of them)."""
    customers = (ledger or {}).get("customers", {})
    return sorted(cid for cid, link in customers.items() if link["linked"])


def may_send(ledger: dict | None, category: str) -> tuple[bool, str]:
    """Whether a message of ``category`` may go to this phone, with a reason code."""
    status = (ledger or {}).get("status", NEVER)
    if category == TRANSACTIONAL:
        return (False, "opted_out") if status == UNSUBSCRIBED else (True, "not_opted_out")
    if category != MARKETING:
        return False, "unknown_category"
    if status == SUBSCRIBED:
        return True, "subscribed"
    if status == UNSUBSCRIBED:
        return False, "opted_out"
    return False, "consent_pending" if is_pending(ledger) else "no_consent"


def reply_due(change: dict | None, outcome: str | None) -> bool:
    """Whether the outcome of ``change`` calls for one text back to the phone.

    Keyword events get exactly one confirmation, except those Twilio matched itself
    (``OptOutType``): Twilio has already replied. A double opt-in needs its request.
    """
    if outcome == CONFIRMATION_REQUESTED:
        return True
    return (bool(change) and change.get("kind") == "keyword"
            and change.get("source") == SOURCE_KEYWORD and outcome in REPLY_OUTCOMES)


def text_hash(text: str | None) -> str | None:
    """sha256 of the exact consent text: proves what the person agreed to."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None


# -------------------------------------------------------------------------- changes


def trait_change(sms_consent: dict, *, event_time: float | str,
                 customer_id: str | None = None) -> dict:
    """A change from an identify event's ``traits.sms_consent`` object.

    The consent's own ``timestamp`` is its event time; without one, the identify event's.
    """
    if not isinstance(sms_consent, dict):
        raise InvalidConsent("sms_consent_not_an_object")
    status = sms_consent.get("status")
    if status not in TRAIT_STATUSES:
        raise InvalidConsent("invalid_consent_status")
    return {"kind": "consent", "status": status,
            "source": sms_consent.get("source") or "identify",
            "timestamp": epoch(sms_consent.get("timestamp") or event_time),
            "text": sms_consent.get("text"), "customer_id": customer_id}


def inbound_change(inbound: dict, ledger: dict | None) -> dict | None:
    """A change from an inbound text (the webhook's JSON), or None for free text.

    The time of the change is the receive time: an opt-out counts from the moment it
    reached us.
    """
    found = keywords.classify_inbound(inbound.get("Body"), inbound.get("OptOutType"),
                                      awaiting_confirmation=is_pending(ledger))
    if found.kind == keywords.NONE:
        return None
    return {"kind": "keyword", "keyword_kind": found.kind, "keyword": found.word,
            "source": SOURCE_PROVIDER_KEYWORD if found.by_provider else SOURCE_KEYWORD,
            "timestamp": epoch(inbound.get("received_at")), "text": inbound.get("Body"),
            "message_sid": inbound.get("MessageSid")}


def provider_opt_out_change(*, timestamp: float | str, error_code: str = "21610",
                            message_sid: str | None = None) -> dict:
    """A change from the provider saying the phone has opted out (Twilio 21610)."""
    return {"kind": "provider_opt_out", "timestamp": epoch(timestamp),
            "error_code": str(error_code), "message_sid": message_sid}


def link_change(customer_id: str, *, timestamp: float | str) -> dict:
    """This phone now belongs (also) to ``customer_id``."""
    return {"kind": "link", "customer_id": customer_id, "timestamp": epoch(timestamp)}


def unlink_change(customer_id: str, *, timestamp: float | str) -> dict:
    """``customer_id`` moved to another phone."""
    return {"kind": "unlink", "customer_id": customer_id, "timestamp": epoch(timestamp)}


def epoch(value: float | int | str | None) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise InvalidConsent("missing_timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidConsent("bad_timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


# ---------------------------------------------------------------------------- apply


def apply(ledger: dict | None, change: dict, *, now: float,
          double_opt_in_sources: Collection[str] = ()) -> tuple[dict, str | None]:
    """Apply ``change``; return the new ledger (the input is not modified) and the
    outcome kind (``opted_out``, ``opted_in``, ``help_requested``,
    ``confirmation_requested``) or None when nothing the phone owner did needs telling.

    ``double_opt_in_sources``: consent sources whose subscriptions must be confirmed by a
    "Y" reply before marketing may be sent.
    """
    handler = _HANDLERS.get(change.get("kind"))
    if handler is None:
        raise InvalidConsent("unknown_change_kind")
    ledger = _copy(ledger or new_ledger())
    change = {**change, "timestamp": epoch(change.get("timestamp"))}
    return ledger, handler(ledger, change, now, frozenset(double_opt_in_sources))


def _apply_consent(ledger, change, now, double_opt_in_sources):
    if change.get("status") not in TRAIT_STATUSES:
        raise InvalidConsent("invalid_consent_status")
    if change.get("customer_id"):
        _link(ledger, change["customer_id"], True, change["timestamp"], now)
    if _is_repeat(ledger, change):
        return None
    if _is_stale(ledger, change):
        _record(ledger, change, now, "ignored_stale")
        return None
    if change["status"] == UNSUBSCRIBED:
        return _opt_out(ledger, change, now, forced=False)
    if change["source"] in double_opt_in_sources and ledger["status"] != SUBSCRIBED:
        ledger["pending"] = {
            "source": change["source"], "timestamp": change["timestamp"],
            "text": _clip(change.get("text")), "text_hash": text_hash(change.get("text")),
            "customer_id": change.get("customer_id"), "requested_at": now}
        _record(ledger, change, now, "pending_confirmation")
        return CONFIRMATION_REQUESTED
    was_subscribed = ledger["status"] == SUBSCRIBED
    _set_status(ledger, SUBSCRIBED, change, now)
    _record(ledger, change, now, "applied")
    return None if was_subscribed else OPTED_IN


def _apply_keyword(ledger, change, now, _double_opt_in_sources):
    kind = change.get("keyword_kind")
    if kind == keywords.OPT_OUT:
        _opt_out(ledger, change, now, forced=True)
        return OPTED_OUT
    if kind == keywords.HELP:
        _record(ledger, change, now, "help")
        return HELP_REQUESTED
    if kind == keywords.CONFIRM and is_pending(ledger):
        pending = ledger["pending"]
        _set_status(ledger, SUBSCRIBED, {**change, "source": pending["source"],
                                         "text": None}, now)
        ledger["text"], ledger["text_hash"] = pending["text"], pending["text_hash"]
        _record(ledger, change, now, "confirmed")
        return OPTED_IN
    if kind == keywords.OPT_IN:
        if _is_stale(ledger, change):
            _record(ledger, change, now, "ignored_stale")
            return None
        _set_status(ledger, SUBSCRIBED, change, now)
        _record(ledger, change, now, "applied")
        return OPTED_IN
    _record(ledger, change, now, "ignored_nothing_pending")
    return None


def _apply_provider_opt_out(ledger, change, now, _double_opt_in_sources):
    return _opt_out(ledger, {**change, "source": SOURCE_PROVIDER}, now, forced=True)


def _apply_link(ledger, change, now, _double_opt_in_sources):
    if not change.get("customer_id"):
        raise InvalidConsent("missing_customer_id")
    _link(ledger, change["customer_id"], change["kind"] == "link", change["timestamp"], now)
    return None


_HANDLERS = {"consent": _apply_consent, "keyword": _apply_keyword,
             "provider_opt_out": _apply_provider_opt_out,
             "link": _apply_link, "unlink": _apply_link}


# ---------------------------------------------------------------------- internals


def _copy(ledger: dict) -> dict:
    """Copy the mutable parts; history entries themselves are never modified."""
    return {**ledger, "customers": dict(ledger["customers"]),
            "history": list(ledger["history"]),
            "pending": dict(ledger["pending"]) if ledger["pending"] else None}


def _opt_out(ledger: dict, change: dict, now: float, *, forced: bool) -> str | None:
    """Unsubscribe; a forced (keyword/provider) opt-out ignores event-time order."""
    was_unsubscribed = ledger["status"] == UNSUBSCRIBED
    effective = change
    if forced and (ledger["timestamp"] or float("-inf")) > change["timestamp"]:
        effective = {**change, "timestamp": ledger["timestamp"]}
    _set_status(ledger, UNSUBSCRIBED, effective, now)
    _record(ledger, change, now, "applied")
    return None if was_unsubscribed else OPTED_OUT


def _set_status(ledger: dict, status: str, change: dict, now: float) -> None:
    ledger.update(status=status, source=change.get("source"),
                  timestamp=change["timestamp"], keyword=change.get("keyword"),
                  text=_clip(change.get("text")), text_hash=text_hash(change.get("text")),
                  pending=None, updated_at=now)


def _is_stale(ledger: dict, change: dict) -> bool:
    """Older than the current status; at equal times only an opt-out may win."""
    current = ledger["timestamp"]
    if current is None:
        return False
    if change["timestamp"] == current:
        return change.get("status", SUBSCRIBED) != UNSUBSCRIBED and \
            ledger["status"] == UNSUBSCRIBED
    return change["timestamp"] < current


def _is_repeat(ledger: dict, change: dict) -> bool:
    """The same consent again (identify re-sends its traits): nothing to record."""
    pending = ledger["pending"]
    if pending and change["status"] == SUBSCRIBED:
        return (pending["source"], pending["timestamp"]) == (change["source"],
                                                             change["timestamp"])
    return (ledger["status"], ledger["source"], ledger["timestamp"]) == (
        change["status"], change["source"], change["timestamp"])


def _link(ledger: dict, customer_id: str, linked: bool, at: float, now: float) -> None:
    """Link or unlink a customer, unless a newer link/unlink of it is already known."""
    current = ledger["customers"].get(customer_id)
    if current and current["at"] > at:
        return
    ledger["customers"][customer_id] = {"linked": linked, "at": at}
    if (current or {}).get("linked", False) != linked:
        ledger["updated_at"] = now
        _record(ledger, {"kind": "link" if linked else "unlink", "timestamp": at,
                         "customer_id": customer_id}, now, "applied")


def _record(ledger: dict, change: dict, now: float, result: str) -> None:
    entry = {"kind": change["kind"], "at": change["timestamp"], "recorded_at": now,
             "result": result}
    for field in ("status", "keyword_kind", "keyword", "source", "customer_id",
                  "message_sid", "error_code"):
        if change.get(field) is not None:
            entry[field] = change[field]
    if change.get("text"):
        entry["text"] = _clip(change["text"])
        entry["text_hash"] = text_hash(change["text"])
    history = ledger["history"]
    if history and _same_event(history[-1], entry):
        return  # e.g. the same stale trait re-sent by every identify: one entry is proof
    history.append(entry)
    overflow = len(history) - HISTORY_LIMIT
    if overflow > 0:
        del history[:overflow]
        ledger["history_dropped"] += overflow
    ledger["updated_at"] = now


def _same_event(a: dict, b: dict) -> bool:
    return {**a, "recorded_at": None} == {**b, "recorded_at": None}


def _clip(text: str | None) -> str | None:
    return text[:TEXT_LIMIT] if text else None
