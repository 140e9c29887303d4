"""Timer keys sort by due time, so a scan can stop at the first future key; no owner
(customer id or phone), whatever it contains, can be confused with another."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_the_timer_id_may_contain_the_separator():
    key = timers.encode(10.0, "+14155550100", "reply:STOP:x|y")
    decoded = timers.decode(key)
    assert (decoded.owner, decoded.timer_id) == ("+14155550100", "reply:STOP:x|y")


# ----------------------------------------------- issue 9: customer ids cannot be confused

AWKWARD_OWNERS = ["a|b", "a", "a|", "|b", "|", "||", "a:b", "3:abc", "12", "0", "1:", ":",
                  "3:a|b", "a|b|c", " ", "\t", "\x00", "é|ü", "顧客|42", "🛒|🙂", "c" * 500,
                  "0000000001000|1:x|y"]


@pytest.mark.parametrize("owner", AWKWARD_OWNERS)
def test_an_awkward_customer_id_round_trips_exactly(owner):
    """Issue 9: customer `a|b` had its timer routed to customer `a`."""
    key = timers.encode(1_800_000_000.25, owner, "en_1:wait_1:wait")
    decoded = timers.decode(key)
    assert decoded == timers.TimerKey(1_800_000_000.25, owner, "en_1:wait_1:wait")


def test_owners_that_share_a_prefix_never_decode_to_each_other():
    keys = {owner: timers.encode(100.0, owner, "t|1") for owner in AWKWARD_OWNERS}
    assert len(set(keys.values())) == len(AWKWARD_OWNERS)
    assert {timers.decode(k).owner for k in keys.values()} == set(AWKWARD_OWNERS)
    assert timers.decode(timers.encode(100.0, "a|b", "t")).owner != "a"


@pytest.mark.parametrize("bad", ["", "0000000000100", "0000000000100|", "0000000000100|x:a|t",
                                 "0000000000100|5:a|t", "0000000000100|1:ab|t",
                                 "nonsense-key-of-some-length|1:a|t"])
def test_keys_not_written_by_encode_are_refused(bad):
    with pytest.raises(timers.BadTimerKey):
        timers.decode(bad)


@settings(max_examples=500, deadline=None)
@given(owner=st.text(), timer_id=st.text(),
       due=st.floats(min_value=0, max_value=9_999_999_999.0, allow_nan=False))
def test_any_owner_and_timer_id_round_trip(owner, timer_id, due):
    key = timers.encode(due, owner, timer_id)
    decoded = timers.decode(key)
    assert (decoded.owner, decoded.timer_id) == (owner, timer_id)
    assert 0 <= due - decoded.due < 0.001 + 1e-6  # the key keeps whole milliseconds
    assert key < timers.upper_bound(due)  # due at its own time, whatever the owner


@settings(max_examples=300, deadline=None)
@given(a=st.text(), b=st.text(), timer_a=st.text(), timer_b=st.text())
def test_different_owners_or_ids_never_share_a_key(a, b, timer_a, timer_b):
    if (a, timer_a) != (b, timer_b):
        assert timers.encode(5.0, a, timer_a) != timers.encode(5.0, b, timer_b)
