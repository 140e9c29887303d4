"""``smsflow flows backtest``: what a flow folder would have done over recorded events.

Ties :mod:`~smsflow.flowqa.sources` (the recorded events, in event-time order),
:mod:`~smsflow.flowqa.simulate` (the real agents on a simulated clock) and
:mod:`~smsflow.flowqa.report` (counts per flow and day) together, with a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smsflow.clock import iso
from smsflow.core.records.sends import PhoneState
from smsflow.flowqa.pricing import Prices
from smsflow.flowqa.report import BacktestReport, Tally
from smsflow.flowqa.simulate import Simulation, memoized_phones, simulation_settings
from smsflow.flowqa.sources import EventIndex
from smsflow.streams.settings import Settings

PROGRESS_EVERY = 2_000


@dataclass
class Options:
    flows_dir: Path
    policy: str                                 # a file, or "defaults"
    prices: Prices
    tz: str = "UTC"
    report_from: float | None = None
    report_to: float | None = None
    drain: float | None = None                  # keep the clock running this long after the last event
    phones: Mapping[str, PhoneState] | None = None
    settings: Settings | None = None


class Progress:
    """A rich progress bar on stderr (events, simulated time, texts, events/s); silent
    when stderr is not a terminal or ``quiet``."""

    def __init__(self, total: int, label: str, quiet: bool = False) -> None:
        import sys

        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        console = Console(stderr=True)
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                       MofNCompleteColumn(),
                       TextColumn("events"), TextColumn("{task.fields[clock]}"),
                       TextColumn("[green]{task.fields[texts]:,} texts"),
                       TextColumn("{task.fields[rate]:,.0f} ev/s"), TimeElapsedColumn(),
                       TimeRemainingColumn(), console=console, disable=not self.enabled,
                       transient=False)
        self.task = self.bar.add_task(label, total=total, clock="", texts=0, rate=0.0)

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def update(self, done: int, clock: float, texts: int, rate: float) -> None:
        self.bar.update(self.task, completed=done, clock=(iso(clock) or "")[:16].replace("T", " "),
                        texts=texts, rate=rate)


def run(index: EventIndex, options: Options, *, label: str = "backtest",
        quiet: bool = False, on_progress: Callable[[int], None] | None = None) -> BacktestReport:
    """One run of ``options.flows_dir`` over ``index``."""
    settings = simulation_settings(options.flows_dir, options.policy, options.settings)
    tally: Tally | None = None

    def outcome(o: Any, t: float) -> None:
        assert tally is not None
        tally.outcome(o, t)

    def dispatch(c: Any, t: float) -> None:
        assert tally is not None
        tally.dispatch(c, t)

    def dead_letter(d: Any, t: float) -> None:
        assert tally is not None
        tally.dead_letter(d, t)

    sim = Simulation(settings, on_outcome=outcome, on_dispatch=dispatch,
                     on_dead_letter=dead_letter)
    tally = Tally(sim.policy, options.prices, options.tz, options.report_from, options.report_to)
    preloaded = sim.preload_phones(options.phones) if options.phones else 0
    total = len(index)
    started = time.perf_counter()
    with Progress(total, label, quiet) as bar, memoized_phones():
        feed = sim.feed
        buffer, starts, ends = index.buffer, index.starts, index.ends
        for i, t in enumerate(index.times):
            feed(t, buffer[starts[i]:ends[i]])
            if i % PROGRESS_EVERY == 0:
                elapsed = time.perf_counter() - started
                bar.update(i, sim.now, _texts(tally), i / elapsed if elapsed > 0 else 0.0)
                if on_progress is not None:
                    on_progress(i)
        end = index.last if index.last is not None else 0.0
        if options.report_to is not None:
            end = max(end, options.report_to)
        if options.drain is not None:
            end += options.drain
        sim.drain(end)
        elapsed = time.perf_counter() - started
        bar.update(total, sim.now, _texts(tally), total / elapsed if elapsed > 0 else 0.0)
    flows = {f.id: f.category for f in sim.engine.flows.values()}
    notes = []
    if sim.next_due is not None:
        notes.append(f"{len(sim.queue):,} timers were still due after {iso(end, 'seconds')}: "
                     "their texts are not counted (--drain DURATION lets the clock run on)")
    return tally.report(
        flows=flows, flows_dir=str(options.flows_dir), policy=str(options.policy),
        source=index.source, events=total, first_event=iso(index.first),
        last_event=iso(index.last), report_from=iso(options.report_from),
        report_to=iso(options.report_to), clock_end=iso(sim.now if sim.now > 0 else None),
        seconds=round(elapsed, 3), events_per_second=round(total / elapsed, 1) if elapsed else 0.0,
        consent_preloaded=preloaded, notes=notes)


def _texts(tally: Tally | None) -> int:
    return sum(s["texts"] for s in tally.senders.values()) if tally is not None else 0


def read_phones(settings: Settings) -> dict[str, PhoneState]:
    """The live phones table (its compacted changelog): every phone's consent ledger."""
    import msgspec

    from smsflow.kafka_read import read_compacted

    topic = f"{settings.app_id}-phones-changelog"
    raw = read_compacted(topic, settings)
    return {phone: msgspec.convert(value, PhoneState) for phone, value in raw.items()}
