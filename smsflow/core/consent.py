"""The consent ledger of one phone: current consent, pending double opt-in, linked
customers and an audit history (``records.phones.ConsentLedger``; the phones agent keeps
it inside the phone's record, keyed by the E.164 phone).

Changes are typed records (``records.phones.ConsentChange``), built by the ``*_change``
helpers below or received on the ``phone-updates`` topic, and applied with :func:`apply`.
Rules:

* a change older than the current status (by event time) does not overwrite it; it is
  kept in the history as ``ignored_stale``; on a tie an opt-out wins;
* an opt-out by keyword or by the provider wins over any consent recorded by the shop
  (traits), whatever their timestamps; between keywords, provider time decides: a STOP
  sent before a START that is already applied does not undo the START;
* trait status ``never`` (the shop has no consent) changes nothing the ledger already
  knows; ``pending`` asks for a double opt-in confirmation;
* marketing needs ``subscribed``; transactional needs "not unsubscribed" (:func:`may_send`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
import msgspec

from smsflow.clock import iso  # noqa: F401  (part of this module's API)
from smsflow.clock import parse_iso
from smsflow.core import keywords
from smsflow.core.records.events import SmsConsent
from smsflow.core.records.phones import (ConsentChange, ConsentLedger, ConsentTraitChange,
                                         CustomerLink, InboundText, KeywordChange, LedgerEntry,
                                         LinkChange, PendingOptIn, ProviderOptOut, UnlinkChange)

SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
NEVER = "never"

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
PHONE_SOURCES = {SOURCE_KEYWORD, SOURCE_PROVIDER_KEYWORD, SOURCE_PROVIDER}  # the owner acted

HISTORY_LIMIT = 200
TEXT_LIMIT = 1600


class InvalidConsent(ValueError):
    """A change that cannot be applied; ``reason`` is a short code for the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- ledger


def new_ledger() -> ConsentLedger:
    """The ledger of a phone we know nothing about (status ``never``)."""
    return ConsentLedger()


def is_pending(ledger: ConsentLedger | None) -> bool:
    """True while a double opt-in waits for its "Y" reply."""
    return bool(ledger and ledger.pending)


def linked_customers(ledger: ConsentLedger | None) -> list[str]:
    """Customer ids currently sharing this phone (an opt-out concerns all of them)."""
    if ledger is None:
        return []
    return sorted(cid for cid, link in ledger.customers.items() if link.linked)


def may_send(ledger: ConsentLedger | None, category: str) -> tuple[bool, str]:
    """Whether a message of ``category`` may go to this phone, with a reason code."""
    status = ledger.status if ledger is not None else NEVER
    if category == TRANSACTIONAL:
        return (False, "opted_out") if status == UNSUBSCRIBED else (True, "not_opted_out")
    if category != MARKETING:
        return False, "unknown_category"
    if status == SUBSCRIBED:
        return True, "subscribed"
    if status == UNSUBSCRIBED:
        return False, "opted_out"
    return False, "consent_pending" if is_pending(ledger) else "no_consent"


def reply_due(change: ConsentChange | None, outcome: str | None) -> bool:
    """Whether the outcome of ``change`` calls for one text back to the phone.

    Keyword events get exactly one confirmation, except those Twilio matched itself
    (``OptOutType``): Twilio has already replied. A double opt-in needs its request.
    """
    if outcome == CONFIRMATION_REQUESTED:
        return True
    return (isinstance(change, KeywordChange) and change.source == SOURCE_KEYWORD
            and outcome in REPLY_OUTCOMES)


def text_hash(text: str | None) -> str | None:
    """sha256 of the exact consent text: proves what the person agreed to."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None


# -------------------------------------------------------------------------- changes


def trait_change(consent: SmsConsent, *, event_time: float | str,
                 customer_id: str | None = None) -> ConsentTraitChange:
    """A change from an identify event's ``traits.sms_consent``.

    The consent's own ``timestamp`` is its event time; without one, the identify event's.
    ``pending`` is a subscription that must be confirmed (double opt-in).
    """
    status = consent.status
    return ConsentTraitChange(
        status="subscribed" if status == "pending" else status,
        source=consent.source or "identify",
        timestamp=epoch(consent.timestamp or event_time),
        text=consent.text, customer_id=customer_id,
        double_opt_in=consent.double_opt_in or status == "pending")


def inbound_change(inbound: InboundText, ledger: ConsentLedger | None) -> KeywordChange | None:
    """A change from an inbound text, or None for free text.

    The time of the change is when the text first reached us (the webhook stamps it once;
    a replay keeps the first stamp): an opt-out counts from that moment.
    """
    found = keywords.classify_inbound(inbound.body, inbound.opt_out_type,
                                      awaiting_confirmation=is_pending(ledger))
    if found.kind == keywords.NONE:
        return None
    return KeywordChange(keyword_kind=found.kind,  # type: ignore[arg-type]
                         keyword=found.word,
                         source="provider_keyword" if found.by_provider else "keyword",
                         timestamp=epoch(inbound.received_at), text=inbound.body,
                         message_sid=inbound.message_sid)


def provider_opt_out_change(*, timestamp: float | str, error_code: str = "21610",
                            message_sid: str | None = None) -> ProviderOptOut:
    """A change from the provider saying the phone has opted out (Twilio 21610)."""
    return ProviderOptOut(timestamp=epoch(timestamp), error_code=str(error_code),
                          message_sid=message_sid)


def link_change(customer_id: str, *, timestamp: float | str) -> LinkChange:
    """This phone now belongs (also) to ``customer_id``."""
    return LinkChange(customer_id=customer_id, timestamp=epoch(timestamp))


def unlink_change(customer_id: str, *, timestamp: float | str) -> UnlinkChange:
    """``customer_id`` moved to another phone."""
    return UnlinkChange(customer_id=customer_id, timestamp=epoch(timestamp))


def epoch(value: float | int | str | None) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise InvalidConsent("missing_timestamp")
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise InvalidConsent("bad_timestamp") from exc


# ---------------------------------------------------------------------------- apply


def apply(ledger: ConsentLedger | None, change: ConsentChange, *, now: float,
          double_opt_in_sources: Collection[str] = ()) -> tuple[ConsentLedger, str | None]:
    """Apply ``change``; return the new ledger (the input is not modified) and the
    outcome kind (``opted_out``, ``opted_in``, ``help_requested``,
    ``confirmation_requested``) or None when nothing the phone owner did needs telling.

    ``double_opt_in_sources``: consent sources whose subscriptions must be confirmed by a
    "Y" reply before marketing may be sent.
    """
    new = _copy(ledger or new_ledger())
    sources = frozenset(double_opt_in_sources)
    if isinstance(change, ConsentTraitChange):
        return new, _apply_consent(new, change, now, sources)
    if isinstance(change, KeywordChange):
        return new, _apply_keyword(new, change, now)
    if isinstance(change, ProviderOptOut):
        return new, _opt_out(new, change, SOURCE_PROVIDER, now, forced=True)
    if isinstance(change, (LinkChange, UnlinkChange)):
        if not change.customer_id:
            raise InvalidConsent("missing_customer_id")
        _link(new, change.customer_id, isinstance(change, LinkChange), change.timestamp, now)
        return new, None
    raise InvalidConsent("unknown_change_kind")


def _apply_consent(ledger: ConsentLedger, change: ConsentTraitChange, now: float,
                   double_opt_in_sources: frozenset[str]) -> str | None:
    if change.customer_id:
        _link(ledger, change.customer_id, True, change.timestamp, now)
    if change.status == NEVER:
        if ledger.status != NEVER or ledger.pending:
            _record(ledger, _entry(change, now, "ignored_never"))
        return None
    if _is_repeat(ledger, change):
        return None
    if _is_stale(ledger, change.timestamp, change.status):
        _record(ledger, _entry(change, now, "ignored_stale"))
        return None
    if change.status == UNSUBSCRIBED:
        return _opt_out(ledger, change, change.source, now, forced=False)
    needs_confirmation = change.double_opt_in or change.source in double_opt_in_sources
    if needs_confirmation and ledger.status != SUBSCRIBED:
        ledger.pending = PendingOptIn(
            source=change.source, timestamp=change.timestamp, text=_clip(change.text),
            text_hash=text_hash(change.text), customer_id=change.customer_id, requested_at=now)
        _record(ledger, _entry(change, now, "pending_confirmation"))
        return CONFIRMATION_REQUESTED
    was_subscribed = ledger.status == SUBSCRIBED
    _set_status(ledger, SUBSCRIBED, change.source, change.timestamp, None, change.text, now)
    _record(ledger, _entry(change, now, "applied"))
    return None if was_subscribed else OPTED_IN


def _apply_keyword(ledger: ConsentLedger, change: KeywordChange, now: float) -> str | None:
    kind = change.keyword_kind
    if kind == keywords.OPT_OUT:
        if _keyword_newer(ledger, change.timestamp):
            _record(ledger, _entry(change, now, "ignored_stale"))
            return None
        _opt_out(ledger, change, change.source, now, forced=True)
        return OPTED_OUT
    if kind == keywords.HELP:
        _record(ledger, _entry(change, now, "help"))
        return HELP_REQUESTED
    if kind == keywords.CONFIRM and ledger.pending is not None:
        pending = ledger.pending
        _set_status(ledger, SUBSCRIBED, pending.source, change.timestamp, change.keyword, None, now)
        ledger.text, ledger.text_hash = pending.text, pending.text_hash
        _record(ledger, _entry(change, now, "confirmed"))
        return OPTED_IN
    if kind == keywords.OPT_IN:
        if _is_stale(ledger, change.timestamp, SUBSCRIBED):
            _record(ledger, _entry(change, now, "ignored_stale"))
            return None
        _set_status(ledger, SUBSCRIBED, change.source, change.timestamp, change.keyword,
                    change.text, now)
        _record(ledger, _entry(change, now, "applied"))
        return OPTED_IN
    _record(ledger, _entry(change, now, "ignored_nothing_pending"))
    return None


# ---------------------------------------------------------------------- internals


def _copy(ledger: ConsentLedger) -> ConsentLedger:
    """Copy the mutable parts; history entries themselves are never modified."""
    return msgspec.structs.replace(ledger, customers=dict(ledger.customers),
                                   history=list(ledger.history))


def _opt_out(ledger: ConsentLedger, change: ConsentChange, source: str, now: float, *,
             forced: bool) -> str | None:
    """Unsubscribe; a forced (keyword/provider) opt-out ignores the shop's timestamps."""
    was_unsubscribed = ledger.status == UNSUBSCRIBED
    at = change.timestamp
    if forced and ledger.timestamp is not None and ledger.timestamp > at:
        at = ledger.timestamp
    keyword = change.keyword if isinstance(change, KeywordChange) else None
    text = change.text if isinstance(change, (KeywordChange, ConsentTraitChange)) else None
    _set_status(ledger, UNSUBSCRIBED, source, at, keyword, text, now)
    _record(ledger, _entry(change, now, "applied", source=source))
    return None if was_unsubscribed else OPTED_OUT


def _set_status(ledger: ConsentLedger, status: str, source: str | None, at: float,
                keyword: str | None, text: str | None, now: float) -> None:
    ledger.status = status  # type: ignore[assignment]
    ledger.source = source
    ledger.timestamp = at
    ledger.keyword = keyword
    ledger.text = _clip(text)
    ledger.text_hash = text_hash(text)
    ledger.pending = None
    ledger.updated_at = now


def _is_stale(ledger: ConsentLedger, at: float, status: str) -> bool:
    """Older than the current status; at equal times only an opt-out may win."""
    current = ledger.timestamp
    if current is None:
        return False
    if at == current:
        return status != UNSUBSCRIBED and ledger.status == UNSUBSCRIBED
    return at < current


def _keyword_newer(ledger: ConsentLedger, at: float) -> bool:
    """The current status was set by the phone's owner after ``at`` (a reordered STOP)."""
    return (ledger.source in PHONE_SOURCES and ledger.status == SUBSCRIBED
            and ledger.timestamp is not None and ledger.timestamp > at)


def _is_repeat(ledger: ConsentLedger, change: ConsentTraitChange) -> bool:
    """The same consent again (identify re-sends its traits): nothing to record."""
    pending = ledger.pending
    if pending is not None and change.status == SUBSCRIBED:
        return (pending.source, pending.timestamp) == (change.source, change.timestamp)
    return (ledger.status, ledger.source, ledger.timestamp) == (
        change.status, change.source, change.timestamp)


def _link(ledger: ConsentLedger, customer_id: str, linked: bool, at: float, now: float) -> None:
    """Link or unlink a customer, unless a newer link/unlink of it is already known."""
    current = ledger.customers.get(customer_id)
    if current is not None and current.at > at:
        return
    ledger.customers[customer_id] = CustomerLink(linked=linked, at=at)
    if (current.linked if current is not None else False) != linked:
        ledger.updated_at = now
        _record(ledger, LedgerEntry(kind="link" if linked else "unlink", at=at, recorded_at=now,
                                    result="applied", customer_id=customer_id))


def _entry(change: ConsentChange, now: float, result: str,
           source: str | None = None) -> LedgerEntry:
    entry = LedgerEntry(kind=type(change).__struct_config__.tag,  # type: ignore[arg-type]
                        at=change.timestamp, recorded_at=now, result=result)
    if isinstance(change, ConsentTraitChange):
        entry.status, entry.source, entry.customer_id = change.status, change.source, change.customer_id
        text = change.text
    elif isinstance(change, KeywordChange):
        entry.keyword_kind, entry.keyword = change.keyword_kind, change.keyword
        entry.source, entry.message_sid = change.source, change.message_sid
        text = change.text
    elif isinstance(change, ProviderOptOut):
        entry.source, entry.message_sid = SOURCE_PROVIDER, change.message_sid
        entry.error_code = change.error_code
        text = None
    else:
        entry.customer_id = change.customer_id
        text = None
    if source is not None:
        entry.source = source
    if text:
        entry.text, entry.text_hash = _clip(text), text_hash(text)
    return entry


def _record(ledger: ConsentLedger, entry: LedgerEntry) -> None:
    history = ledger.history
    if history and _same_event(history[-1], entry):
        return  # e.g. the same stale trait re-sent by every identify: one entry is proof
    history.append(entry)
    overflow = len(history) - HISTORY_LIMIT
    if overflow > 0:
        del history[:overflow]
        ledger.history_dropped += overflow
    ledger.updated_at = entry.recorded_at


def _same_event(a: LedgerEntry, b: LedgerEntry) -> bool:
    return msgspec.structs.replace(a, recorded_at=0.0) == msgspec.structs.replace(b, recorded_at=0.0)


def _clip(text: str | None) -> str | None:
    return text[:TEXT_LIMIT] if text else None
