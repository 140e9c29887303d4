"""Producer events (topic ``events``, public: ``schemas/event.schema.json``).

Track and identify calls in the Segment/Customer.io shape. ``properties`` and ``traits``
are open maps by contract (a brand sends whatever it has); the traits the engine acts on
are checked with :class:`KnownTraits`. :class:`IngestedEvent` is what the rest of the
engine sees: validated, the event name canonicalised, event time as epoch seconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from smsflow.core.records.base import Record

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ConsentStatus = Literal["subscribed", "unsubscribed", "never", "pending"]


class TrackEvent(Record, kw_only=True, tag="track", tag_field="type", rename="camel",
                 omit_defaults=True):
    message_id: Id
    event: Id
    user_id: Id | None = None
    anonymous_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    timestamp: Annotated[str, msgspec.Meta(min_length=10)] | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    context: dict[str, Any] | None = None
    # identify's field: checked as the schema does for every event, not used by a track
    traits: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class IdentifyEvent(Record, kw_only=True, tag="identify", tag_field="type", rename="camel",
                    omit_defaults=True):
    message_id: Id
    user_id: Id
    traits: dict[str, Any]
    anonymous_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    timestamp: Annotated[str, msgspec.Meta(min_length=10)] | None = None
    context: dict[str, Any] | None = None
    # track's fields: checked as the schema does for every event, not used by an identify
    event: Id | msgspec.UnsetType = msgspec.UNSET
    properties: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


Event = TrackEvent | IdentifyEvent


class SmsConsent(Record, kw_only=True):
    """``traits.sms_consent``: the customer's SMS consent as the shop recorded it.

    ``never``: the shop has no consent for this phone (marketing stays off; an existing
    subscription or opt-out in the ledger is not changed by it). ``pending``: the customer
    signed up and must confirm by replying Y (double opt-in)."""

    status: ConsentStatus
    source: str | None = None
    timestamp: str | None = None
    text: str | None = None
    double_opt_in: bool = False


class KnownTraits(Record, kw_only=True):
    """The traits the engine reads; other traits are kept as sent (Liquid can use them)."""

    phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    country: Annotated[str, msgspec.Meta(max_length=56)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    first_name: str | None = None
    sms_consent: SmsConsent | None = None


class IngestedEvent(Record, kw_only=True):
    """A validated event: ``event`` canonical (track) or None (identify), ``ts`` = event time."""

    kind: Literal["track", "identify"]
    message_id: str
    user_id: str | None
    event: str | None
    timestamp: str | None
    ts: float
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    traits: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def is_track(self) -> bool:
        return self.kind == "track"
