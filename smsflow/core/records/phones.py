"""Phone-side records: normalised phones, consent changes, the consent ledger, inbound texts.

Everything here is keyed by the E.164 phone. The ledger (:class:`ConsentLedger`) is the
authority on what may be sent to a phone; changes reach it as :class:`PhoneUpdate`
records on the internal ``phone-updates`` topic (identify traits, customer links,
provider opt-outs) or as :class:`InboundText` from the webhook (keywords).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from smsflow.core.records.base import Record

LedgerStatus = Literal["subscribed", "unsubscribed", "never"]
KeywordKind = Literal["opt_out", "opt_in", "help", "confirm"]


class PhoneInfo(Record, kw_only=True):
    """A normalised phone and what the gate needs to locate its owner."""

    e164: str
    country: str                    # ISO 3166 region of the number ("US", "CA", "GB", ...)
    time_zones: list[str]           # candidate IANA zones of the number; empty when unknown
    state: str | None               # US state / CA province code from the area code
    line_type: str                  # "mobile" | "fixed_line_or_mobile" | "voip"


# --------------------------------------------------------------------- consent changes


class ConsentTraitChange(Record, kw_only=True, tag="consent", tag_field="kind"):
    """An identify's ``traits.sms_consent`` (status ``pending`` arrives here as a
    subscription that needs confirmation: ``double_opt_in`` True)."""

    status: Literal["subscribed", "unsubscribed", "never"]
    source: str
    timestamp: float
    text: str | None = None
    customer_id: str | None = None
    double_opt_in: bool = False


class KeywordChange(Record, kw_only=True, tag="keyword", tag_field="kind"):
    """A keyword in an inbound text (STOP, START, HELP, Y, plain revocations)."""

    keyword_kind: KeywordKind
    keyword: str
    source: Literal["keyword", "provider_keyword"]
    timestamp: float
    text: str | None = None
    message_sid: str | None = None


class ProviderOptOut(Record, kw_only=True, tag="provider_opt_out", tag_field="kind"):
    """The provider says the phone opted out (Twilio 21610 / 30004)."""

    timestamp: float
    error_code: str = "21610"
    message_sid: str | None = None


class LinkChange(Record, kw_only=True, tag="link", tag_field="kind"):
    customer_id: str
    timestamp: float


class UnlinkChange(Record, kw_only=True, tag="unlink", tag_field="kind"):
    customer_id: str
    timestamp: float


ConsentChange = ConsentTraitChange | KeywordChange | ProviderOptOut | LinkChange | UnlinkChange


class PhoneUpdate(Record, kw_only=True):
    """Topic ``phone-updates`` (key: phone): one change for one phone's ledger."""

    phone: str
    change: ConsentChange


# --------------------------------------------------------------------------- ledger


class LedgerEntry(Record, kw_only=True):
    """One line of a phone's consent history (what happened, when, and what we did)."""

    kind: str
    at: float                       # event time of the change
    recorded_at: float              # when the ledger applied it
    result: str                     # applied | ignored_stale | pending_confirmation | ...
    status: str | None = None
    keyword_kind: str | None = None
    keyword: str | None = None
    source: str | None = None
    customer_id: str | None = None
    message_sid: str | None = None
    error_code: str | None = None
    text: str | None = None
    text_hash: str | None = None


class PendingOptIn(Record, kw_only=True):
    """A double opt-in waiting for its "Y"."""

    source: str
    timestamp: float
    text: str | None
    text_hash: str | None
    customer_id: str | None
    requested_at: float


class CustomerLink(Record, kw_only=True):
    linked: bool
    at: float


class ConsentLedger(Record, kw_only=True):
    """The consent ledger of one phone: current status, pending opt-in, linked customers
    and the audit history (oldest first, bounded; ``history_dropped`` counts the rest)."""

    status: LedgerStatus = "never"
    source: str | None = None
    timestamp: float | None = None
    keyword: str | None = None
    text: str | None = None
    text_hash: str | None = None
    updated_at: float | None = None
    pending: PendingOptIn | None = None
    customers: dict[str, CustomerLink] = msgspec.field(default_factory=dict)
    history: list[LedgerEntry] = msgspec.field(default_factory=list)
    history_dropped: int = 0


# -------------------------------------------------------------------------- inbound


class InboundText(Record, kw_only=True, rename="pascal", omit_defaults=True):
    """Topic ``inbound`` (public: ``schemas/inbound.schema.json``, key: E.164 phone):
    Twilio's inbound-message webhook fields plus when the webhook received it."""

    message_sid: str
    from_: str = msgspec.field(name="From")
    to: str | None = None
    body: str | None = None
    account_sid: str | None = None
    num_media: str | None = None
    opt_out_type: Literal["STOP", "START", "HELP"] | None = None
    received_at: str = msgspec.field(default="", name="received_at")  # "" = when processed
