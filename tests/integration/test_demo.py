"""`smsflow demo` end to end, reduced: a few hundred customers at high speed on the test broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def processes_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose environment carries ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return result


def test_demo_runs_the_closed_loop_reports_and_leaves_nothing(bootstrap, tmp_path):
    from confluent_kafka.admin import AdminClient

    out = tmp_path / "out"
    marker = f"DEMO_TEST_RUN={uuid.uuid4().hex}"  # inherited by every process the demo starts
    env = {**os.environ, **dict([marker.split("=")]), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "smsflow.cli", "demo", "--customers", "400", "--speed", "1200",
         "--seed", "3", "--out", str(out), "--bootstrap", bootstrap],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=170)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    # The report: rows per flow and variant, and the lift next to the simulator's truth.
    for variant in ("treatment", "control"):
        assert re.search(rf"abandoned_checkout\s+{variant}\s+\d+\s+\d+", output), output[-6000:]
    assert re.search(r"shipping_updates\s+treatment\s+\d+", output)
    assert "report's estimated absolute lift" in output
    assert "the interval covers the true uplift" in output

    # The chart is a real PNG (decodes, sensible size).
    chart = out / "report.png"
    assert chart.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    height, width = matplotlib.image.imread(chart).shape[:2]
    assert width > 500 and height > 300

    # Texts went out (and control customers were held out); clicks and orders came back.
    outcomes = [orjson.loads(line) for line in (out / "outcomes.jsonl").read_bytes().splitlines()]
    types = Counter(o["type"] for o in outcomes)
    assert types["sent"] > 20 and types["would_send"] > 20, types
    assert types["clicked"] > 0 and types["converted"] > 0 and types["delivered"] > 0, types
    assert not any(o["type"] == "sent" and o["variant"] == "control" for o in outcomes)

    # Malformed events and bad phones reached the DLQ (as the demo read it from the topic).
    dlq = re.search(r"DLQ: (\d+) records \(([^)]*)\)", output)
    assert dlq and int(dlq.group(1)) > 0, output[-3000:]
    for reason in ("malformed_json", "missing_user_id", "unknown_event_type", "invalid_phone"):
        assert re.search(rf"{reason} \d+", dlq.group(2)), dlq.group(2)

    # Nothing left: no process with this run's marker, no run folder, no topics of the run.
    assert processes_with(marker) == []
    assert not Path(re.search(r"run folder: (\S+)", output).group(1)).exists()
    prefix = re.search(r"topics: (demo[0-9a-f]+)\.", output).group(1)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert wait_until(lambda: not [t for t in admin.list_topics(timeout=10).topics
                                   if t.startswith(prefix)])


# -- the demo's own pieces, without a broker (fast) ------------------------------------------

def test_only_cart_texts_persuade_so_control_stays_at_the_base_rate():
    from smsflow.demo.simulator import Simulator

    sim = Simulator(2000, seed=1, stop_rate=0.0, help_rate=0.0)
    persuadable = [c for c in sim.customers.values() if sim.is_persuadable(c.id)]
    a, b = persuadable[0], persuadable[1]
    t = max(a.checkout_at, b.checkout_at) + 3600
    shipping = sim.on_text(a.id, "Your order is on its way: http://x/l/a", t, flow_id="shipping_updates")
    assert not any(item.get("event") == "Order Placed" for item in shipping)
    cart = sim.on_text(b.id, "You left 2 items: http://x/l/b", t, flow_id="abandoned_checkout")
    assert any(item.get("event") == "Order Placed" for item in cart)


def test_every_customer_is_identified_first_on_phones_without_stricter_state_rules():
    import yaml

    from smsflow.core import phones
    from smsflow.core.policy import DEFAULT_DOC
    from smsflow.demo.simulator import AREA_CODES, Simulator, item_time

    sim = Simulator(1500, seed=4)
    for c in sim.customers.values():
        assert c.events[0]["type"] == "identify"
        assert all(item_time(e) > item_time(c.events[0]) for e in c.events[1:])
    strict = set(DEFAULT_DOC["states"]) | set(
        yaml.safe_load((REPO / "deploy" / "policy.yaml").read_text())["states"])
    for code in AREA_CODES:
        assert phones.normalize(f"({code}) 555-0150", "US", "US").state not in strict


def test_every_demo_process_reads_the_same_compressed_clock():
    from smsflow.clock import ScaledClock
    from smsflow.demo.run import SimClock

    clock = SimClock(origin=1_800_000_000.0, real_epoch=1_000.0, speed=400.0)
    assert clock.sim(1_010.0) == 1_800_004_000.0 and clock.real(1_800_004_000.0) == 1_010.0
    # Services get the same origin, epoch and speed: their clocks agree whenever they start.
    import time
    service = ScaledClock(400.0, origin=clock.origin, epoch=clock.real_epoch)
    assert abs(service.now() - clock.sim(time.time())) < 400 * 0.05