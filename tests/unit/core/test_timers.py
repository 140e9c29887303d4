"""Timer keys sort by due time, so a scan can stop at the first future key."""

from smsflow.core import timers


def test_keys_sort_by_due_time_and_round_trip():
    keys = [timers.encode(due, "c9", f"t{due}") for due in (1_800_000_000.5, 5.0, 1_700_000_000.0)]
    assert sorted(keys) == [keys[1], keys[2], keys[0]]
    decoded = timers.decode(keys[0])
    assert (decoded.due, decoded.owner, decoded.timer_id) == (1_800_000_000.5, "c9", "t1800000000.5")


def test_upper_bound_separates_due_from_future():
    now = 1_800_000_000.0
    due, future = timers.encode(now, "c", "a"), timers.encode(now + 0.002, "c", "b")
    bound = timers.upper_bound(now)
    assert due < bound <= future


def test_owner_may_contain_the_separator_in_the_timer_id_only():
    key = timers.encode(10.0, "+14155550100", "reply:STOP:x|y")
    assert timers.decode(key).timer_id == "reply:STOP:x|y"
