"""Property: hostile events never crash the customers agent, never vanish, and never touch
the valid customers around them.

Each example builds a small valid population (customers ``v0``.. with identify and track
events, products with Back In Stock, all through the record constructors) and a handful
of hostile records (malformed or non-UTF-8 bytes, huge, deeply nested, wrong types,
nulls, unknown types, NaN/infinite/huge money, ids full of ``|`` and ``:``, wrong keys and
partitions, replayed messageIds). It runs the real agents twice on the functional
harness -- the valid events alone, correctly keyed; then valid and hostile interleaved in
the same batches, some valid customers' events also wrongly keyed on a wrong partition --
fires the timers half an hour and a day later, and checks:

* no agent raises (a lane gives up on its first failure);
* every input record is processed (its messageId is in its customer's state, or it
  reached the products agent) or dead-lettered with a reason, never both, never neither:
  processed + dead-lettered = inputs;
* no valid record is dead-lettered, and no hostile one as ``internal_error`` (the decoder
  must name what is wrong);
* the valid customers' state (profiles, flow state, timers, phones' consent ledgers) and
  outputs (outcomes, send commands, texts) equal those of the run without hostile records;
* no record produced anywhere (outputs, DLQ, changelogs) exceeds ``max_record_bytes``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsflow.core import events as core_events
from smsflow.core.records.base import encode
from smsflow.core.records.events import TrackEvent
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.sends import PhoneState, SendCommand
from smsflow.core.timers import decode as decode_timer
from smsflow.streams.batch import DLQ_VALUE_MAX
from smsflow.streams.partitioning import home
from smsflow.streams.settings import Settings
from tests.fuzz import report
from tests.fuzz.report import examples
from tests.fuzz.pipeline import T0, Pipeline, dispositions
from tests.fuzz.strategies import (VALID_IDS, VALID_PHONES, Hostile, Valid, hostile_event,
                                   replay, valid_population)

pytestmark = pytest.mark.fuzz

PARTITIONS = 4
EXAMPLES = examples(60)


def waiting_customer(key: str) -> str:
    """The customer of a wait-list key ``len:product|customer``."""
    size, _, rest = key.partition(":")
    return rest[int(size) + 1:]


def first_difference(got: Any, want: Any, path: str = "") -> str:
    """Where two snapshots first differ (JSON bytes are compared decoded)."""
    if isinstance(got, bytes) and isinstance(want, bytes):
        got, want = msgspec.json.decode(got), msgspec.json.decode(want)
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want), key=str):
            if got.get(key, "<absent>") != want.get(key, "<absent>"):
                return first_difference(got.get(key, "<absent>"), want.get(key, "<absent>"),
                                        f"{path}.{key}")
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                return first_difference(a, b, f"{path}[{i}]")
    return f"at {path or '.'}: {got!r:.600} != {want!r:.600}"


def snapshot(p: Pipeline, customers: set[str], phones: set[str]) -> dict[str, Any]:
    """Everything the valid customers own or caused, comparable across runs."""
    stores = p.h.stores
    timers = sorted(k.decode() for part in stores["customer_timers"].data.values() for k in part
                    if decode_timer(k.decode()).owner in customers)
    phone_timers = sorted(k.decode() for part in stores["phone_timers"].data.values()
                          for k in part if decode_timer(k.decode()).owner in phones)
    waiting = sorted(k.decode() for part in stores["waitlists"].data.values() for k in part
                     if waiting_customer(k.decode()) in customers)
    return {
        "customers": {k: encode(v) for k, v in p.customers().items() if k in customers},
        "phones": {k: encode(v) for k, v in p.h.table("phones", PhoneState).items() if k in phones},
        "customer_timers": timers,
        "phone_timers": phone_timers,
        "waitlists": waiting,
        "outcomes": sorted(encode(o) for o in p.out("outcomes", Outcome)
                           if o.customer_id in customers),
        "sends": sorted(encode(s) for s in p.out("sends", SendCommand) if s.phone in phones),
        "texts": sorted((c["to"], c["body"] or "", c["key"] or "") for c in p.provider.sent
                        if c["to"] in phones),
    }


def run(p: Pipeline, chunks: list[list[tuple[Any, bytes | None, bytes | str | None, int | None]]]) -> None:
    """Feed each chunk as the customers agent's fetch, route until quiet; then fire the
    timers due half an hour and a day later."""
    for chunk in chunks:
        records = [p.record("events", value, key=key, partition=partition)
                   for _, value, key, partition in chunk]
        p.feed("customers", records)
    p.clock.advance(31 * 60)
    p.tick()
    p.clock.advance(86400)
    p.tick()


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(data=st.data())
def test_hostile_events_are_processed_or_dead_lettered_and_disturb_no_valid_customer(
        pytestconfig, tmp_path_factory, data):
    started = time.perf_counter()
    population, products = data.draw(valid_population(), label="valid")
    valid_customers = sorted({v.customer for v in population if v.customer})
    # some valid customers' events arrive wrongly keyed on one wrong partition
    misdelivered: dict[str, tuple[bytes | None, int]] = {}
    for cid in valid_customers:
        if data.draw(st.booleans(), label=f"misdeliver {cid}"):
            right = home(cid, PARTITIONS)
            wrong = data.draw(st.sampled_from([p for p in range(PARTITIONS) if p != right]))
            key = data.draw(st.sampled_from([None, f"{cid}@shop.example".encode(), b"",
                                             b"\xff\xfe", VALID_IDS[-1].encode()]))
            misdelivered[cid] = (key, wrong)
    count = data.draw(st.integers(1, 8), label="hostile records")
    hostile: list[Hostile] = [data.draw(hostile_event(i, PARTITIONS), label=f"hostile {i}")
                              for i in range(count)]
    replays = data.draw(st.lists(replay(population, PARTITIONS), max_size=3), label="replays")
    where = [data.draw(st.integers(0, 2), label=f"chunk of hostile {i}") for i in range(count)]

    def valid_entry(v: Valid, hostile_run: bool) -> tuple[Any, bytes, bytes | str | None, int | None]:
        if hostile_run and v.customer in misdelivered:
            key, partition = misdelivered[v.customer]
            return (v, v.raw, key, partition)
        return (v, v.raw, v.key, None)

    def hostile_entry(h: Hostile) -> tuple[Any, bytes | None, bytes | None, int]:
        return (h, h.value, h.key, h.partition)

    # chunk 0: customer events with hostile ones among them; chunk 1: replays (after their
    # originals were processed) and more hostile; chunk 2: product events and hostile ones
    chunk0: list[Any] = [valid_entry(v, True) for v in population]
    for h, c in zip(hostile, where):
        if c == 0:
            chunk0.insert(data.draw(st.integers(0, len(chunk0)), label="position"), hostile_entry(h))
    chunk1 = [hostile_entry(h) for h in replays] + [hostile_entry(h) for h, c in zip(hostile, where) if c == 1]
    chunk2: list[Any] = [valid_entry(v, True) for v in products]
    for h, c in zip(hostile, where):
        if c == 2:
            chunk2.insert(data.draw(st.integers(0, len(chunk2)), label="position"), hostile_entry(h))

    # a valid follow-up event for every customer a hostile record was accepted for: a
    # record that poisons its customer's state shows as a follow-up that is not processed
    followups: list[Any] = []
    for entry in [*chunk0, *chunk1]:
        accepted = core_events.decode(entry[1], T0, Settings().limits)
        if not isinstance(accepted, core_events.Rejection) and accepted.user_id is not None:
            uid = accepted.user_id
            if uid not in VALID_IDS and uid not in {f[0].customer for f in followups}:
                event = TrackEvent(message_id=f"f-{len(followups)}", user_id=uid,  # texts now
                                   event="Order Shipped", properties={
                                       "order_id": "f", "tracking_url": "https://t.example/f"})
                followups.append((Valid(event, uid, uid), encode(event), uid, None))
    chunk2 += followups

    tmp = tmp_path_factory.mktemp("events")
    with Pipeline(tmp / "base", partitions=PARTITIONS) as base, \
            Pipeline(tmp / "hostile", partitions=PARTITIONS) as mixed:
        run(base, [[valid_entry(v, False) for v in population], [],
                   [valid_entry(v, False) for v in products]])
        run(mixed, [chunk0, chunk1, chunk2])

        for table, spec in mixed.h.rt.table_specs.items():  # every stored record decodes
            for part in mixed.h.stores[table].data.values():
                for key, raw in part.items():
                    try:
                        msgspec.json.decode(raw, type=spec.value_type)
                    except msgspec.ValidationError as exc:
                        raise AssertionError(f"{table}[{key!r}] no longer decodes: {exc}") from None

        # every input processed or dead-lettered, valid ones processed
        entries = [*chunk0, *chunk1, *chunk2]
        fates = dispositions(mixed, mixed.inputs)
        assert len(fates) == len(entries)
        lost = [(type(e).__name__, getattr(e, "kind", "valid"), (v or b"")[:200], f.how)
                for (e, v, _, _), f in zip(entries, fates) if f.fate == "lost"]
        assert not lost, f"inputs neither processed nor dead-lettered: {lost}"
        valid_fates = [f for (e, *_), f in zip(entries, fates) if isinstance(e, Valid)]
        assert all(f.fate == "processed" for f in valid_fates), \
            [(e.event, f) for (e, *_), f in zip(entries, fates) if isinstance(e, Valid) and f.fate != "processed"]
        internal = [(e.kind, (v or b"")[:300]) for (e, v, _, _), f in zip(entries, fates)
                    if f.reason == "internal_error"]
        assert not internal, f"hostile events the decoder let through and the engine choked on: {internal}"
        assert base.letters() == [], "the valid population alone is dead-lettered nowhere"
        crashed = [(d.stage, d.detail) for d in mixed.letters() if d.reason == "internal_error"]
        assert not crashed, f"records that made an agent fail (internal_error): {crashed}"

        # the valid customers are unaffected
        customers, phones = set(valid_customers), set(VALID_PHONES)
        expected, got = snapshot(base, customers, phones), snapshot(mixed, customers, phones)
        for part in expected:
            assert got[part] == expected[part], \
                f"valid customers' {part} differ with hostile input: {first_difference(got[part], expected[part])}"

        # nothing produced is over the record size limit; the DLQ keeps a cut copy
        size, topic = mixed.largest_record()
        assert size <= mixed.settings.max_record_bytes, f"{topic}: a record of {size} bytes"
        for letter in mixed.letters():
            assert letter.reason and letter.stage
            assert letter.value is None or len(letter.value) <= DLQ_VALUE_MAX

    processed = sum(f.fate == "processed" for f in fates)
    dead = sum(f.fate == "dead_lettered" for f in fates)
    assert processed + dead == len(entries)
    report.record(pytestconfig, "fuzz: events (customers agent)", inputs=len(entries),
                  processed=processed, dead_lettered=dead, valid=len(valid_fates),
                  valid_unaffected=len(valid_fates), seconds=time.perf_counter() - started,
                  reasons=Counter(f.reason for f in fates if f.reason),
                  kinds=Counter(h.kind for h in hostile + replays),
                  compared=Counter({part: len(value) for part, value in expected.items()}))
