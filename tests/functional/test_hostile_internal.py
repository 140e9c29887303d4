"""Issue 12: one malformed record on the internal dispatch topic dropped the other 19 sends
of its batch. Each case puts one broken dispatch command among 19 good ones, fed through
the dispatcher lane's own admission (as a worker does): 19 texts go out, the broken one
is dead-lettered, nothing waits."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from smsflow.clock import iso
from smsflow.core.records.base import encode, to_builtins
from smsflow.core.records.sends import DispatchCommand, SendCommand
from tests.fuzz import report
from tests.fuzz.pipeline import T0, Pipeline

PHONES = [f"+1415555{400 + i:04d}" for i in range(20)]


def command(i: int) -> DispatchCommand:
    return DispatchCommand(
        send=SendCommand(idempotency_key=f"en_{i}:s", customer_id=f"c{i}", phone=PHONES[i],
                         category="transactional", body=f"Order {i} shipped",
                         created_at=iso(T0)),
        sender="+18005550199", sender_mps=1000.0, segments=1, encoding="GSM-7", gated_at=T0)


def broken(**fields: object) -> bytes:
    doc = to_builtins(command(19))
    doc.update(fields)
    return orjson.dumps(doc)


CASES = {
    "sender rate 0": broken(sender_mps=0),
    "negative sender rate": broken(sender_mps=-5),
    "a million segments": broken(segments=1_000_000),
    "10^12 segments": broken(segments=10**12),
    "negative segments": broken(segments=-1),
    "nested 5,000 deep": encode(command(19))[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "not JSON": b"\x00\xff{",
    "null value": None,
    "a send command, not a dispatch": encode(command(19).send),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("position", [0, 10, 19])
def test_one_broken_dispatch_command_among_19_good_ones(tmp_path: Path, case, position,
                                                        pytestconfig):
    started = time.perf_counter()
    with Pipeline(tmp_path) as p:
        records = [p.record("dispatch", command(i), key=PHONES[i]) for i in range(19)]
        records.insert(position, p.record("dispatch", CASES[case], key=PHONES[19]))
        p.feed("dispatcher", records)
        assert p.batches[0] == ("dispatcher", 20), "admitted as one batch"
        texted = sorted(c["to"] for c in p.provider.sent)
        assert texted == sorted(PHONES[:19])
        letters = p.letters()
        assert [(d.partition, d.offset) for d in letters] == \
            [(records[position].partition, records[position].offset)]
        assert time.perf_counter() - started < 10, "nothing waited on the broken command's pacing"
    report.record(pytestconfig, "functional: broken dispatch among 19", inputs=20, processed=19,
                  dead_lettered=1, valid=19, valid_unaffected=len(texted),
                  lost=19 - len(texted), reasons={letters[0].reason: 1},
                  note=f"{len(CASES)} kinds of broken command x 3 positions in the batch")
