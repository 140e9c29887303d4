"""Priority under a sender's MPS limit on the real broker: with a 2-MPS sender and a
backlog of low-priority texts, high-priority sends that arrive a second later still go out
among the first, every text goes out exactly once, and no second carries more than 2."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.harness import Stack, wait_for
from tests.integration.phone_helpers import HERE, produce_sends, send_cmd, subscribe

pytestmark = pytest.mark.integration


@pytest.fixture
def slow_stack(stack_factory, tmp_path: Path) -> Stack:
    policy = tmp_path / "policy.yaml"
    policy.write_text((HERE / "policy.yaml").read_text().replace("mps: 50", "mps: 2"))
    stack = stack_factory(SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=policy,
                          SMSFLOW_TICK_INTERVAL=0.2)
    stack.start_twilio()
    stack.start_worker()
    return stack


def test_high_priority_overtakes_a_backlog_on_a_busy_sender(slow_stack):
    stack = slow_stack
    low = [(f"lo{i}", f"+1415555{1100 + i:04d}") for i in range(12)]
    high = [(f"hi{i}", f"+1415555{1200 + i:04d}") for i in range(4)]
    subscribe(stack, low + high)
    produce_sends(stack, [send_cmd(p, f"{c}-e:m", customer=c, category="transactional",
                                   priority=10) for c, p in low])
    time.sleep(1.0)
    produce_sends(stack, [send_cmd(p, f"{c}-e:m", customer=c, category="transactional",
                                   priority=90) for c, p in high])
    texts = wait_for(lambda: (lambda t: t if len(t) >= 16 else None)(stack.texts()),
                     timeout=90, message="16 texts")
    time.sleep(2.0)  # nothing more arrives
    texts = sorted(stack.texts(), key=lambda t: t["date_created"])
    refs = [t["ref"] for t in texts]
    assert Counter(refs) == {f"{c}-e:m": 1 for c, _ in low + high}
    positions = [i for i, ref in enumerate(refs) if ref.startswith("hi")]
    # at most the two low texts sent before they arrived, and two or three more already
    # booked, go ahead of them: all four are among the first eight of sixteen
    assert max(positions) < 8, refs
    times = [t["date_created"] for t in texts]
    assert all(b - a >= 1.0 for a, b in zip(times, times[2:])), times  # 2 per second at most
    sent = stack.outcomes("sent")
    assert Counter(o["idempotency_key"] for o in sent) == {f"{c}-e:m": 1 for c, _ in low + high}
