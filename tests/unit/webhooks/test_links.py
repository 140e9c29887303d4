"""The on-disk links store: applying topic records, offsets, waiting for a fresh link."""

import asyncio
import time

import orjson

from smsflow.webhooks.links import LinkStore, link_value

LINK = {"target": "https://shop.example/checkout/ch_9?utm_source=smsflow", "code": "Ab3_x-9QzK",
        "short": "https://hooks.example.com/l/Ab3_x-9QzK", "customer_id": "c_1",
        "flow_id": "abandoned_checkout", "step_id": "s1", "enrollment_id": "e1",
        "idempotency_key": "e1:s1"}


def record(partition, offset, code, value):
    return (partition, offset, code.encode(), None if value is None else orjson.dumps(value))


def test_links_are_stored_with_only_the_fields_a_click_needs(tmp_path):
    store = LinkStore(tmp_path, "t.links")
    store.apply([record(0, 0, "Ab3_x-9QzK", LINK)])
    assert store.get("Ab3_x-9QzK") == {k: LINK[k] for k in (
        "target", "customer_id", "flow_id", "step_id", "enrollment_id", "idempotency_key")}
    store.stop()


def test_tombstones_and_unusable_targets_forget_the_code(tmp_path):
    store = LinkStore(tmp_path, "t.links")
    store.apply([record(0, 0, "a", LINK), record(0, 1, "b", LINK), record(1, 0, "c", LINK)])
    store.apply([record(0, 2, "a", None), record(0, 3, "b", {**LINK, "target": "javascript:x"}),
                 (1, 1, b"c", b"not json")])
    assert store.get("a") is None and store.get("b") is None and store.get("c") is None
    store.stop()


def test_codes_outside_the_alphabet_are_never_stored_or_looked_up(tmp_path):
    store = LinkStore(tmp_path, "t.links")
    store.apply([record(0, 0, "../x", LINK), record(0, 1, "a" * 65, LINK)])
    assert store.get("../x") is None and store.get("a" * 65) is None
    assert store.stored_offset(0) == 2  # still consumed
    store.stop()


def test_offsets_persist_with_the_links_so_a_restart_resumes(tmp_path):
    store = LinkStore(tmp_path, "t.links")
    store.apply([record(0, 41, "a", LINK), record(3, 7, "b", LINK)])
    store.stop()
    again = LinkStore(tmp_path, "t.links")
    assert (again.stored_offset(0), again.stored_offset(3), again.stored_offset(1)) == (42, 8, None)
    assert again.get("a")["target"] == LINK["target"]
    assert again.get("zzz") is None
    again.stop()


def test_offsets_are_per_topic(tmp_path):
    store = LinkStore(tmp_path, "a.links")
    store.apply([record(0, 5, "a", LINK)])
    store.stop()
    other = LinkStore(tmp_path, "b.links")
    assert other.stored_offset(0) is None
    other.stop()


async def test_a_link_minted_a_moment_ago_is_waited_for(tmp_path):
    store = LinkStore(tmp_path, "t.links")
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, store.apply, [record(0, 0, "fresh", LINK)])
    link = await store.resolve("fresh", wait=2.0)
    assert link is not None and link["target"] == LINK["target"]
    store.stop()


async def test_an_unknown_code_waits_no_longer_than_the_bound(tmp_path):
    store = LinkStore(tmp_path, "t.links")
    started = time.monotonic()
    assert await store.resolve("unknown", wait=0.3) is None
    assert 0.25 <= time.monotonic() - started < 1.0
    store.stop()


async def test_a_flood_of_unknown_codes_does_not_pile_up_waiters(tmp_path):
    store = LinkStore(tmp_path, "t.links", max_waiters=2)
    started = time.monotonic()
    results = await asyncio.gather(*(store.resolve(f"u{i}", wait=0.5) for i in range(10)))
    assert results == [None] * 10
    assert time.monotonic() - started < 1.0  # 8 of them did not wait at all
    store.stop()


def test_link_value_rejects_non_objects():
    assert link_value(b"[1]") is None and link_value(b"") is None and link_value(None) is None
    assert orjson.loads(link_value(orjson.dumps(LINK)))["customer_id"] == "c_1"
