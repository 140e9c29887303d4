"""The fault suite's private broker (some rounds restart it) and its result table.

Every round appends a row (scenario, texts due, sent, lost, duplicated, seconds); the table
is printed at the end of the test run, so the CI log shows what each fault cost.
"""

from __future__ import annotations

import pytest

from smsflow.broker import Broker, free_port

ROWS: list[tuple[str, int, int, int, int, float]] = []


@pytest.fixture(scope="session")
def fault_broker(tmp_path_factory):
    broker = Broker(port=free_port(), controller_port=free_port(),
                    run_dir=tmp_path_factory.mktemp("fault-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not ROWS:
        return
    tr = terminalreporter
    tr.write_sep("=", "fault suite: every due text sent exactly once")
    tr.write_line(f"{'scenario':<44} {'due':>6} {'sent':>6} {'lost':>5} {'dup':>5} {'secs':>6}")
    for name, due, sent, lost, dup, secs in ROWS:
        tr.write_line(f"{name:<44} {due:>6} {sent:>6} {lost:>5} {dup:>5} {secs:>6.0f}")
    tr.write_line(f"{'total':<44} {sum(r[1] for r in ROWS):>6} {sum(r[2] for r in ROWS):>6} "
                  f"{sum(r[3] for r in ROWS):>5} {sum(r[4] for r in ROWS):>5} "
                  f"{sum(r[5] for r in ROWS):>6.0f}")
