"""Priority under a sender's MPS limit: what goes now, in which order, and when the rest
comes back (smsflow.core.dispatch_order)."""

from smsflow.core.dispatch_order import Pending, order


def pending(i, priority, *, sender="S", segments=1, rate=2.0, waited=0.0, urgent=False):
    return Pending(index=i, sender=sender, segments=segments, rate=rate, priority=priority,
                   waited=waited, urgent=urgent)


def test_highest_priority_goes_first_and_the_rest_is_queued_at_its_turn():
    jobs = [pending(i, 10) for i in range(4)] + [pending(4, 90), pending(5, 90)]
    plan = order(jobs, {"S": 0.0}, horizon=1.0, max_wait=120)
    assert plan.now == [4, 5, 0]             # 0 s, 0.5 s, 1.0 s: within the horizon
    assert plan.later == [(1, 1.5), (2, 2.0), (3, 2.5)]  # arrival order among equals


def test_a_busy_sender_queues_everything_but_urgent_and_aged_sends():
    jobs = [pending(0, 99), pending(1, 1, urgent=True), pending(2, 1, waited=121)]
    plan = order(jobs, {"S": 5.0}, horizon=1.0, max_wait=120)
    assert plan.now == [2, 1]  # aged and urgent, the longer-waiting first
    assert plan.later == [(0, 6.0)]  # behind the 5 s backlog and the two it let through


def test_senders_do_not_share_a_budget_and_segments_count():
    jobs = [pending(0, 50, sender="A", segments=4, rate=2.0), pending(1, 50, sender="A"),
            pending(2, 10, sender="B", rate=1.0), pending(3, 10, sender="B", rate=1.0)]
    plan = order(jobs, {}, horizon=1.0, max_wait=120)
    assert plan.now == [0, 2, 3]      # A's 4-segment text books 2 s; B sends 2 in 1 s
    assert plan.later == [(1, 2.0)]


def test_nothing_lost_nothing_twice():
    jobs = [pending(i, i % 7, sender="AB"[i % 2], segments=1 + i % 3, waited=i) for i in range(200)]
    plan = order(jobs, {"A": 0.5}, horizon=2.0, max_wait=150)
    indexes = plan.now + [i for i, _ in plan.later]
    assert sorted(indexes) == list(range(200))
    assert all(wait > 2.0 for _, wait in plan.later)
