"""Issue 12's replays, on the functional tier: a signed webhook replayed later (or twice,
or on another partition) changes nothing; consent follows the provider's time, not arrival.
"""

from __future__ import annotations

from collections import Counter
from itertools import permutations
from pathlib import Path

import pytest

from smsflow.clock import iso
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import InboundText
from smsflow.core.records.receipts import DeliveryReceipt, ReceiptState
from smsflow.core.records.sends import PhoneState
from smsflow.streams.partitioning import home
from tests.fuzz import report
from tests.fuzz.pipeline import T0, Pipeline
from tests.fuzz.strategies import identify

PHONE = "+14155550123"


def inbound(sid: str, body: str, at: float, phone: str = PHONE) -> InboundText:
    return InboundText(message_sid=sid, from_=phone, to="+18005550199", body=body,
                       received_at=iso(at, "milliseconds") or "")


def consent(p: Pipeline, phone: str = PHONE) -> str:
    return p.h.table("phones", PhoneState)[phone].ledger.status


def keyword_outcomes(p: Pipeline) -> list[tuple[str, str | None]]:
    return [(o.type, o.message_sid) for o in p.out("outcomes", Outcome)
            if o.type in ("opted_in", "opted_out")]


def replies(p: Pipeline) -> list[str]:
    return [c["key"] for c in p.provider.sent if c["key"].startswith("reply:")]


@pytest.fixture
def linked(tmp_path: Path):
    """A phone linked to customer c1 with no consent yet (marketing off)."""
    with Pipeline(tmp_path) as p:
        p.feed("customers", [p.record("events", identify("c1", PHONE, 0, status="",
                                                         minutes_ago=120), key="c1")])
        yield p


def feed_inbound(p: Pipeline, texts: list[InboundText], *, partition: int | None = None) -> None:
    p.feed("phones", [p.record("inbound", t, key=t.from_, partition=partition) for t in texts])


def test_a_replayed_start_after_stop_does_not_resubscribe(linked: Pipeline, pytestconfig):
    p = linked
    start, stop = inbound("SMstart", "START", T0 - 60), inbound("SMstop", "STOP", T0 - 30)
    wrong = (home(PHONE, p.settings.partitions) + 1) % p.settings.partitions
    feed_inbound(p, [start])
    assert consent(p) == "subscribed"
    feed_inbound(p, [stop, start])                 # replayed in the STOP's own batch
    assert consent(p) == "unsubscribed"
    feed_inbound(p, [start])                       # replayed in a later batch
    feed_inbound(p, [start], partition=wrong)      # replayed off its partition (re-homed)
    assert consent(p) == "unsubscribed"
    assert keyword_outcomes(p) == [("opted_in", "SMstart"), ("opted_out", "SMstop")]
    assert replies(p) == ["reply:opted_in:SMstart", "reply:opted_out:SMstop"]

    # a new START (another message) re-subscribes; the old STOP replayed does not undo it
    again = inbound("SMstart2", "START", T0 - 10)
    feed_inbound(p, [again])
    feed_inbound(p, [stop, stop])
    feed_inbound(p, [stop], partition=wrong)
    assert consent(p) == "subscribed"
    assert keyword_outcomes(p) == [("opted_in", "SMstart"), ("opted_out", "SMstop"),
                                   ("opted_in", "SMstart2")]
    assert len(replies(p)) == 3
    assert p.letters() == []
    report.record(pytestconfig, "functional: replayed START/STOP", inputs=9, processed=9,
                  valid=3, valid_unaffected=3, duplicated=len(replies(p)) - 3,
                  note="3 genuine keywords, 6 replays (same batch, later, re-homed): "
                       "3 consent changes, 3 replies")


def test_a_stop_that_arrives_after_a_later_start_does_not_undo_it(linked: Pipeline, pytestconfig):
    """Reordered webhooks: provider time decides between keywords, not arrival."""
    p = linked
    stop, start = inbound("SMstop", "STOP", T0 - 60), inbound("SMstart", "START", T0 - 30)
    feed_inbound(p, [start])
    feed_inbound(p, [stop])  # sent before the START, delivered after it
    assert consent(p) == "subscribed"
    history = p.h.table("phones", PhoneState)[PHONE].ledger.history
    assert history[-1].message_sid == "SMstop" and history[-1].result == "ignored_stale"
    report.record(pytestconfig, "functional: reordered STOP/START", inputs=2, processed=2,
                  valid=2, valid_unaffected=2)


STATUSES = ["queued", "sent", "delivered"]


def receipt(status: str, sid: str = "SM" + "7" * 32) -> DeliveryReceipt:
    return DeliveryReceipt(message_sid=sid, message_status=status, to=PHONE, ref="en_r:step",
                           c="c1", received_at=iso(T0, "milliseconds") or "")


@pytest.mark.parametrize("order", sorted(set(permutations(STATUSES + ["delivered", "sent"]))))
def test_replayed_and_reordered_status_callbacks_end_in_one_delivered_outcome(
        tmp_path: Path, order, pytestconfig):
    """Every arrival order of queued/sent/delivered with a replayed sent and delivered
    (some off their partition): one delivered outcome, never a step backwards."""
    with Pipeline(tmp_path) as p:
        sid = "SM" + "7" * 32
        wrong = (home(sid, p.settings.partitions) + 1) % p.settings.partitions
        for n, status in enumerate(order):
            p.feed("receipts", [p.record("delivery", receipt(status), key=sid,
                                         partition=wrong if n % 2 else None)])
        kinds = [o.type for o in p.out("outcomes", Outcome) if o.message_sid == sid]
        assert kinds.count("delivered") == 1 and kinds[-1] == "delivered"
        ranks = [{"queued": 1, "sent": 3}.get(o.reason or "", 5)
                 for o in p.out("outcomes", Outcome) if o.message_sid == sid]
        assert ranks == sorted(set(ranks)), "a receipt moved a message backwards or twice"
        assert p.h.table("receipts", ReceiptState)[sid].status == "delivered"
        assert p.letters() == []
    report.record(pytestconfig, "functional: reordered/replayed receipts", inputs=len(order),
                  processed=len(order), valid=1, valid_unaffected=1,
                  duplicated=kinds.count("delivered") - 1,
                  note=f"{len(set(permutations(STATUSES + ['delivered', 'sent'])))} arrival "
                       f"orders of 5 callbacks (3 statuses, 2 replays)")
