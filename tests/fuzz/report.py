"""Count tables for hostile-input scenarios, printed in the test run's summary.

Every hostile-input test (the fuzz suite, ``tests/functional/test_hostile_*.py`` and
``tests/integration/test_hostile_*.py``) records, per scenario, how many records went in,
how many were processed, how many were dead-lettered (by reason) and how many valid
records were compared against a run without the hostile ones. :func:`record` also prints
the row (visible with ``-s`` or on failure); the whole table is printed once at the end of
the run under "hostile input: counts", so the CI log shows the numbers even with ``-q``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    scenario: str
    inputs: int = 0
    processed: int = 0
    dead_lettered: int = 0
    valid: int = 0
    valid_unaffected: int = 0
    lost: int = 0
    duplicated: int = 0
    examples: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)   # hostile inputs by kind
    compared: Counter = field(default_factory=Counter)  # valid outputs compared, by kind
    note: str = ""

    def add(self, other: "Row") -> None:
        for name in ("inputs", "processed", "dead_lettered", "valid", "valid_unaffected",
                     "lost", "duplicated", "examples", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.kinds.update(other.kinds)
        self.compared.update(other.compared)
        self.note = other.note or self.note


_ROWS: dict[str, Row] = {}


class _Summary:
    """A pytest plugin (registered on first use) that prints the table at the end."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not _ROWS:
            return
        tr = terminalreporter
        tr.section("hostile input: counts")
        header = (f"{'scenario':<44} {'examples':>8} {'inputs':>7} {'processed':>9} "
                  f"{'DLQ':>6} {'valid':>6} {'unaffected':>10} {'lost':>5} {'dup':>4} {'secs':>6}")
        tr.write_line(header)
        tr.write_line("-" * len(header))
        for row in sorted(_ROWS.values(), key=lambda r: r.scenario):
            tr.write_line(_line(row))
            if row.reasons:
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(row.reasons.items()))
                tr.write_line(f"{'':<4}DLQ reasons: {reasons}")
            if row.kinds:
                kinds = ", ".join(f"{k} {v}" for k, v in sorted(row.kinds.items()))
                tr.write_line(f"{'':<4}hostile inputs: {kinds}")
            if row.compared:
                compared = ", ".join(f"{k} {v}" for k, v in sorted(row.compared.items()))
                tr.write_line(f"{'':<4}valid records' outputs compared equal: {compared}")
            if row.note:
                tr.write_line(f"{'':<4}{row.note}")


def _line(row: Row) -> str:
    return (f"{row.scenario[:44]:<44} {row.examples:>8} {row.inputs:>7} {row.processed:>9} "
            f"{row.dead_lettered:>6} {row.valid:>6} {row.valid_unaffected:>10} {row.lost:>5} "
            f"{row.duplicated:>4} {row.seconds:>6.1f}")


def _register(config: Any) -> None:
    config = getattr(config, "config", config)  # a FixtureRequest or the Config itself
    if config is None:
        return
    if not config.pluginmanager.has_plugin("smsflow-hostile-counts"):
        config.pluginmanager.register(_Summary(), "smsflow-hostile-counts")


def record(config: Any, scenario: str, **counts: Any) -> Row:
    """Add one run's counts to ``scenario``'s row (and print the row); ``config`` is the
    ``pytestconfig`` fixture (session-scoped: fine inside hypothesis tests) or a request."""
    _register(config)
    reasons, kinds = counts.pop("reasons", None), counts.pop("kinds", None)
    compared = counts.pop("compared", None)
    row = Row(scenario, examples=counts.pop("examples", 1), **counts)
    row.reasons.update(reasons or {})
    row.kinds.update(kinds or {})
    row.compared.update(compared or {})
    total = _ROWS.setdefault(scenario, Row(scenario))
    total.add(row)
    print(_line(row))
    return total


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> "Timer":
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def examples(default: int) -> int:
    """Hypothesis examples for a property: ``default`` (sized so the whole hostile suite
    runs in about a minute on 2 cores) times ``SMSFLOW_FUZZ_SCALE`` (e.g. 10 for a longer
    local hunt)."""
    return max(1, int(default * float(os.environ.get("SMSFLOW_FUZZ_SCALE", "1"))))
