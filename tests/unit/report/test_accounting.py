"""Accounting on hand-made outcome streams: every enrollment and send balanced or flagged."""

from smsflow.clock import iso
from smsflow.report import build_report
from smsflow.report.accounting import NO_FLOW, build_accounting
from tests.unit.report.outcomes import T0, enrolled, outcome, receipt, sent, would_send

HOUR = 3600.0


def eid(cid: str, flow: str = "cart", n: int = 1) -> str:
    return f"{flow}:{cid}:{n}"


def scheduled(cid: str, t: float, due: float, flow: str = "cart", variant: str = "treatment"):
    return outcome("scheduled", cid, t, flow_id=flow, enrollment_id=eid(cid, flow),
                   step_id="w1", variant=variant, details={"due": iso(due), "kind": "wait"})


def ended(kind: str, cid: str, t: float, reason: str, flow: str = "cart"):
    return outcome(kind, cid, t, flow_id=flow, enrollment_id=eid(cid, flow), reason=reason,
                   variant="treatment")


def step(kind: str, cid: str, t: float, reason: str | None = None, flow: str = "cart",
         **details):
    """A gate or dispatcher record of the send ``<enrollment>:s1``."""
    return outcome(kind, cid, t, flow_id=flow, enrollment_id=eid(cid, flow), step_id="s1",
                   variant="treatment", reason=reason, idempotency_key=f"{eid(cid, flow)}:s1",
                   details=details)


def balanced_flow() -> list[dict]:
    return [
        enrolled("a", T0, "treatment"), scheduled("a", T0, T0 + HOUR),
        sent("a", T0 + HOUR), receipt("delivered", "a", T0 + HOUR + 5),
        ended("completed", "a", T0 + HOUR, "completed"),
        enrolled("b", T0, "control"), scheduled("b", T0, T0 + HOUR, variant="control"),
        would_send("b", T0 + HOUR), ended("completed", "b", T0 + HOUR, "completed"),
        enrolled("c", T0, "treatment"), ended("exited", "c", T0 + 60, "goal_reached"),
        enrolled("d", T0, "treatment"), ended("exited", "d", T0 + 60, "exit_event"),
        enrolled("e", T0, "treatment"), scheduled("e", T0, T0 + HOUR),
        step("suppressed", "e", T0 + HOUR, "quiet_hours"),
        ended("completed", "e", T0 + HOUR, "completed"),
    ]


def test_a_balanced_flow_adds_up_and_flags_nothing():
    accounting = build_accounting(balanced_flow(), as_of=T0 + 2 * HOUR)
    [flow] = accounting.flows
    e, s = flow.enrollments, flow.sends
    assert (e.enrolled, e.ended, e.completed, e.goal_reached, e.active) == (5, 5, 3, 1, 0)
    assert dict(e.exited) == {"goal_reached": 1, "exit_event": 1}
    assert (s.keys, s.sent, s.would_send, dict(s.suppressed)) == (3, 1, 1, {"quiet_hours": 1})
    assert s.terminal == s.keys and accounting.ok and accounting.flags == []


def test_pending_timers_show_their_due_time_and_are_flagged_once_overdue():
    records = [enrolled("a", T0, "treatment"), scheduled("a", T0, T0 + HOUR),
               scheduled("a", T0 + HOUR, T0 + 3 * HOUR),  # the first fired, the next is set
               enrolled("b", T0, "treatment"), scheduled("b", T0, T0 + 5 * HOUR)]
    on_time = build_accounting(records, as_of=T0 + 2 * HOUR)
    e = on_time.flows[0].enrollments
    assert (e.active, e.next_due, on_time.ok) == (2, T0 + 3 * HOUR, True)
    assert [(p.key, p.state, p.due) for p in on_time.pending] == [
        (eid("a"), "scheduled", T0 + 3 * HOUR), (eid("b"), "scheduled", T0 + 5 * HOUR)]
    late = build_accounting(records, as_of=T0 + 3 * HOUR + 601)
    [flag] = late.flags
    assert (flag.key, flag.problem, flag.due, flag.customer_id) == (eid("a"), "overdue",
                                                                   T0 + 3 * HOUR, "a")
    assert late.flows[0].enrollments.next_due == T0 + 5 * HOUR
    assert build_accounting(records, as_of=T0 + 3 * HOUR + 601, grace=3600).ok


def test_an_enrollment_with_nothing_after_it_or_ended_twice_is_flagged():
    records = [enrolled("a", T0, "treatment"),
               enrolled("b", T0, "treatment"), ended("completed", "b", T0 + 5, "completed"),
               ended("exited", "b", T0 + 6, "exit_event"),
               enrolled("c", T0, "treatment"), ended("completed", "c", T0 + 5, "completed"),
               ended("completed", "c", T0 + 5, "completed"),   # the same end written twice
               ended("exited", "z", T0, "exit_event")]          # never enrolled
    accounting = build_accounting(records)
    problems = {(f.key, f.problem) for f in accounting.flags}
    assert problems == {(eid("a"), "no_outcome"), (eid("b"), "two_ends"),
                        (eid("z"), "not_enrolled")}
    assert accounting.flows[0].enrollments.flagged == 3
    assert accounting.as_of == T0 + 7 and accounting.as_of_source == "latest record"


def test_send_outcomes_by_reason_and_pending_deferrals_old_and_new():
    records = [step("sent", "a", T0), step("failed", "b", T0, "invalid_number"),
               step("dropped", "c", T0, "frequency_cap"),
               step("deferred", "d", T0, "quiet_hours", until=iso(T0 + 8 * HOUR)),
               step("deferred", "e", T0, "frequency_cap", not_before=iso(T0 + 2 * HOUR)),
               step("retried", "f", T0, "429", retry_at=iso(T0 + 60)),
               step("deferred", "g", T0, "quiet_hours", until=iso(T0 + HOUR)),
               step("sent", "g", T0 + HOUR)]
    records[0]["message_sid"] = "SMa"
    records[-1]["message_sid"] = "SMg"
    s = build_accounting(records, as_of=T0 + 30).flows[0].sends
    assert (s.keys, s.sent, dict(s.failed), dict(s.dropped)) == (
        7, 2, {"invalid_number": 1}, {"frequency_cap": 1})
    assert dict(s.pending) == {"deferred": 2, "retried": 1} and s.next_due == T0 + 60
    assert [(p.key.split(":")[1], p.state) for p in
            build_accounting(records, as_of=T0 + 30).pending] == [
        ("f", "retried"), ("e", "deferred"), ("d", "deferred")]
    late = build_accounting(records, as_of=T0 + 2 * HOUR + 700)
    assert {(f.key.split(":")[1], f.problem) for f in late.flags} == {
        ("e", "overdue"), ("f", "overdue")}


def test_the_shapes_a_lost_or_doubled_text_leaves_are_flagged():
    delivered = receipt("delivered", "r", T0)
    delivered["idempotency_key"] = f"{eid('r')}:s1"
    records = [
        step("suppressed", "a", T0, "duplicate"),                 # marker kept, text lost
        step("sent", "b", T0, message_sid="SM1"), step("sent", "b", T0 + 9, message_sid="SM2"),
        delivered,                                                # receipt, no send outcome
        step("deferred", "d", T0, "caps"),                        # no due time at all
        step("sent", "e", T0), step("suppressed", "e", T0 + 5, "duplicate"),  # redelivery
        step("sent", "f", T0), receipt("failed", "f", T0 + 9),   # failed *delivery*
    ]
    records[1]["message_sid"], records[2]["message_sid"] = "SM1", "SM2"
    records[5]["message_sid"] = records[7]["message_sid"] = "SMf"
    records[8]["idempotency_key"] = f"{eid('f')}:s1"
    accounting = build_accounting(records, as_of=T0 + 60)
    problems = {(f.key.split(":")[1], f.problem) for f in accounting.flags}
    assert problems == {("a", "duplicate_only"), ("b", "sent_twice"), ("r", "receipt_only"),
                        ("d", "no_due_time")}
    cart, unknown = accounting.flows  # the bare receipt names no flow and no known enrollment
    assert (cart.flow_id, unknown.flow_id) == ("cart", NO_FLOW)
    s = cart.sends
    assert (s.keys, s.sent, dict(s.failed), s.flagged) == (5, 3, {}, 3)
    assert unknown.sends.flagged == 1


def test_receipts_without_a_flow_are_booked_to_their_enrollments_flow():
    records = [enrolled("a", T0, "treatment", flow="ship"),
               ended("completed", "a", T0, "completed", flow="ship")]
    bare = receipt("delivered", "a", T0 + 5)
    bare.update(enrollment_id=eid("a", "ship"), idempotency_key=f"{eid('a', 'ship')}:s1")
    reply = outcome("sent", "a", T0, idempotency_key="reply:+1415:1", message_sid="SMr")
    accounting = build_accounting(records + [bare, reply], flow_id=None)
    assert [f.flow_id for f in accounting.flows] == ["ship", NO_FLOW]
    assert accounting.flows[0].sends.keys == 1 and accounting.flows[1].sends.sent == 1
    assert build_accounting(records + [bare, reply], flow_id="ship").flows[0].flow_id == "ship"


def test_a_decision_written_twice_with_one_outcome_id_is_one_decision():
    first = dict(ended("completed", "a", T0, "completed"), outcome_id="o-1")
    records = [enrolled("a", T0, "treatment"), first, dict(first),
               dict(ended("exited", "a", T0, "exit_event"), outcome_id="o-1")]  # same id
    report = build_report(records)
    assert report.duplicates == 2 and report.accounting.ok
    assert report.accounting.flows[0].enrollments.completed == 1


def test_the_console_shows_balances_flags_and_how_late_they_are():
    from rich.console import Console

    from smsflow.report.render_accounting import render_accounting

    records = [enrolled("a", T0, "treatment"), scheduled("a", T0, T0 + HOUR),
               step("deferred", "b", T0, "quiet_hours", until=iso(T0 + 8 * HOUR)),
               enrolled("c", T0, "treatment"), ended("exited", "c", T0, "audience")]
    console = Console(record=True, width=200)
    render_accounting(build_accounting(records, as_of=T0 + 4 * HOUR), console)
    text = console.export_text()
    assert "1 flagged: 1 enrollment overdue" in text
    assert f"enrollment {eid('a')} (cart, customer a): overdue" in text
    assert "(due 2026-11-28 17:00 UTC, 3.0 h ago)" in text
    assert "1 audience" in text and "1 deferred" in text and "2026-11-29 00:00 UTC" in text
