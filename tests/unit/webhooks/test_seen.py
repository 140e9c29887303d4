"""The on-disk replay window: bounded, FIFO, survives a restart."""

from smsflow.webhooks.seen import RecentIds


def test_remembers_and_survives_a_restart(tmp_path):
    seen = RecentIds(tmp_path, capacity=10)
    seen.add("SM1")
    seen.add("SM2:delivered")
    assert "SM1" in seen and "SM2:delivered" in seen and "SM2:sent" not in seen
    seen.close()
    again = RecentIds(tmp_path, capacity=10)
    assert "SM1" in again and "SM2:delivered" in again
    assert len(again) == 2
    again.close()


def test_is_bounded_and_forgets_the_oldest_first(tmp_path):
    seen = RecentIds(tmp_path, capacity=3)
    for i in range(5):
        seen.add(f"SM{i}")
    assert len(seen) == 3
    assert [f"SM{i}" in seen for i in range(5)] == [False, False, True, True, True]
    seen.close()
    again = RecentIds(tmp_path, capacity=3)  # eviction order survives too
    again.add("SM5")
    assert [f"SM{i}" in again for i in range(6)] == [False] * 3 + [True] * 3
    again.close()


def test_adding_an_id_twice_keeps_one_entry(tmp_path):
    seen = RecentIds(tmp_path, capacity=2)
    seen.add("SM1")
    seen.add("SM1")
    seen.add("SM2")
    assert "SM1" in seen and len(seen) == 2
    seen.close()
