"""The functional tier: the real agents, lanes and commit protocol, without a broker.

Records are built with the same typed constructors the engine uses; a
:class:`~smsflow.streams.testing.Harness` runs them through in-memory tables and producer.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from smsflow.clock import FakeClock, iso
from smsflow.core.records.events import IdentifyEvent, TrackEvent
from smsflow.streams.testing import FakeProvider, Harness

HERE = Path(__file__).parent
FLOWS = HERE / "flows"
POLICY = HERE / "policy.yaml"
LA = ZoneInfo("America/Los_Angeles")


def at(tz: ZoneInfo, *args: int) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def identify(cid: str, phone: str, *, ts: float, status: str | None = "subscribed",
             timezone: str | None = None, mid: str | None = None, **traits: object) -> IdentifyEvent:
    body: dict[str, object] = {"first_name": cid.upper(), "phone": phone, "country": "US", **traits}
    if timezone is not None:
        body["timezone"] = timezone
    if status is not None:
        body["sms_consent"] = {"status": status, "source": "checkout", "timestamp": iso(ts),
                               "text": "Yes, text me offers. Reply STOP to opt out."}
    return IdentifyEvent(message_id=mid or f"id-{cid}-{ts}", user_id=cid, timestamp=iso(ts),
                         traits=body)


def track(cid: str | None, mid: str, event: str, *, ts: float, **props: object) -> TrackEvent:
    return TrackEvent(message_id=mid, user_id=cid, event=event, timestamp=iso(ts),
                      properties=dict(props))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(LA, 2026, 6, 3, 12, 0))


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def harness(tmp_path: Path, clock: FakeClock, provider: FakeProvider) -> Harness:
    return Harness(tmp_path, flows_dir=FLOWS, policy=POLICY, clock=clock, provider=provider)
