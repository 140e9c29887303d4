"""What a backtest found: per flow and day, from the engine's own outcomes and commands.

:class:`Tally` receives what leaves a :class:`~smsflow.flowqa.simulate.Simulation`
(outcomes, the dispatcher's commands, dead letters) and counts, per flow and per local
day: enrollments (and held-out controls), triggers that did not enrol and why, exits by
reason, texts that would be sent, segments and their estimated cost, sends suppressed or
dropped by reason, sends deferred by reason (and how many of those went out later), and
conversions. Reasons fall into the groups a compliance reviewer asks about: consent,
quiet hours (and the flow's send window), state rules, caps, other.

Senders: texts and segments per sender, the busiest minute against the sender's MPS
(``mps x 60`` segments a minute), and how late the texts would leave if the sender works
its queue at its MPS in the order the gate released them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from smsflow.clock import iso
from smsflow.core.policy import Policy
from smsflow.core.records.base import Record
from smsflow.core.records.outcomes import DeadLetter, Outcome
from smsflow.core.records.sends import DispatchCommand
from smsflow.flowqa.pricing import Prices, money

GROUPS = {
    "consent": ("opted_out", "no_consent", "consent_pending", "unknown_category"),
    "quiet hours": ("quiet_hours", "send_window"),
    "state rules": ("state_hours", "state_cap"),
    "caps": ("frequency_cap", "contested_cap"),
}
GROUP_OF = {reason: group for group, reasons in GROUPS.items() for reason in reasons}
NO_FLOW = "(no flow)"


def group_of(reason: str | None) -> str:
    return GROUP_OF.get(reason or "", "other")


class SenderLoad(Record, kw_only=True):
    sender: str
    type: str
    mps: float
    texts: int = 0
    segments: int = 0
    busiest_minute: str | None = None
    busiest_minute_segments: int = 0
    capacity_per_minute: float = 0.0
    busiest_load: float = 0.0                 # busiest minute / capacity (1.0 = at the limit)
    busiest_second_segments: int = 0
    max_delay_seconds: float = 0.0            # FIFO at the MPS: the latest a text would leave
    delayed_texts: int = 0                    # texts that would wait more than a second
    cost: str = "0"


class FlowReport(Record, kw_only=True):
    flow_id: str
    category: str | None = None
    totals: dict[str, int] = msgspec.field(default_factory=dict)
    days: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    cost: str = "0"
    cost_by_day: dict[str, str] = msgspec.field(default_factory=dict)
    revenue: dict[str, str] = msgspec.field(default_factory=dict)  # currency -> amount


class BacktestReport(Record, kw_only=True):
    flows_dir: str
    policy: str
    source: str
    events: int
    first_event: str | None
    last_event: str | None
    report_from: str | None
    report_to: str | None
    clock_end: str | None
    timezone: str
    currency: str
    prices: str
    seconds: float = 0.0
    events_per_second: float = 0.0
    consent_preloaded: int = 0
    flows: dict[str, FlowReport] = msgspec.field(default_factory=dict)
    senders: list[SenderLoad] = msgspec.field(default_factory=list)
    dead_letters: dict[str, int] = msgspec.field(default_factory=dict)
    pending: dict[str, int] = msgspec.field(default_factory=dict)
    notes: list[str] = msgspec.field(default_factory=list)


class _Send:
    __slots__ = ("flow", "deferred", "final")

    def __init__(self, flow: str) -> None:
        self.flow = flow
        self.deferred: list[str] = []
        self.final: str | None = None


class Tally:
    """Counts per (flow, day); only what happens in [report_from, report_to) is counted."""

    def __init__(self, policy: Policy, prices: Prices, tz: str = "UTC",
                 report_from: float | None = None, report_to: float | None = None) -> None:
        self.policy, self.prices = policy, prices
        self.tz_name = tz
        self.tz = timezone.utc if tz == "UTC" else ZoneInfo(tz)
        self.report_from, self.report_to = report_from, report_to
        self.counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.cost: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        self.revenue: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        self.sends: dict[str, _Send] = {}
        self.active: dict[str, str] = {}          # enrollment id -> flow
        self.letters: Counter[str] = Counter()
        self.senders: dict[str, dict[str, Any]] = {}
        self._sender_types = {s.number: (s.type, s.mps) for s in policy.senders}
        self._day_cache: dict[int, str] = {}

    # -- helpers -----------------------------------------------------------------------
    def counted(self, t: float) -> bool:
        return ((self.report_from is None or t >= self.report_from)
                and (self.report_to is None or t < self.report_to))

    def day(self, t: float) -> str:
        hour = int(t // 3600)
        found = self._day_cache.get(hour)
        if found is None:
            found = datetime.fromtimestamp(hour * 3600, self.tz).strftime("%Y-%m-%d") \
                if self.tz is timezone.utc else \
                datetime.fromtimestamp(t, self.tz).strftime("%Y-%m-%d")
            if self.tz is timezone.utc:
                self._day_cache[hour] = found
        return found

    def add(self, flow: str | None, t: float, metric: str, n: int = 1) -> None:
        if self.counted(t):
            self.counts[flow or NO_FLOW][self.day(t)][metric] += n

    # -- inputs ------------------------------------------------------------------------
    def outcome(self, o: Outcome, t: float) -> None:
        kind, flow = o.type, o.flow_id
        if kind == "enrolled":
            self.active[o.enrollment_id or ""] = flow or ""
            self.add(flow, t, "enrolled")
            if o.variant == "control":
                self.add(flow, t, "enrolled_control")
        elif kind in ("exited", "completed"):
            self.active.pop(o.enrollment_id or "", None)
            self.add(flow, t, "completed" if kind == "completed" else f"exited:{o.reason}")
        elif kind == "converted":
            self.add(flow, t, "converted")
            if o.revenue is not None and self.counted(t):
                self.revenue[flow or NO_FLOW][o.currency or "XXX"] += Decimal(repr(o.revenue))
        elif kind == "would_send":
            self.add(flow, t, "held_out")
        elif kind in ("suppressed", "dropped", "deferred"):
            self._blocked(o, t)
        elif kind == "ordered":
            self.add(None, t, "orders")
        elif kind in ("opted_out", "opted_in", "rejected"):
            self.add(None, t, f"{kind}:{o.reason}" if kind == "rejected" else kind)

    def _blocked(self, o: Outcome, t: float) -> None:
        flow, kind = o.flow_id, o.type
        reason = o.reason or "unknown"
        if reason == "no_allowed_window" and o.details.get("blocked_by"):
            reason = f"no_allowed_window:{o.details['blocked_by']}"
        key = o.idempotency_key
        if key is None or o.enrollment_id is None:
            if flow is not None:  # a trigger that did not enrol
                self.add(flow, t, f"not_enrolled:{reason}")
            return
        send = self.sends.get(key)
        if send is None:
            send = self.sends[key] = _Send(flow or NO_FLOW)
        if kind == "deferred":
            if reason not in send.deferred:
                send.deferred.append(reason)
                self.add(flow, t, f"deferred:{reason}")
            return
        if send.final is None:
            send.final = kind
            self.add(flow, t, f"{kind}:{reason}")

    def dispatch(self, command: DispatchCommand, t: float) -> None:
        send = command.send
        flow = send.flow_id if command.kind == "flow" else "(keyword replies)"
        sender_type, mps = self._sender_types.get(command.sender, ("long_code", command.sender_mps))
        cost = self.prices.cost(send.channel, sender_type, command.segments)
        tracked = self.sends.get(send.idempotency_key)
        if tracked is not None and tracked.final is None:
            tracked.final = "sent"
            if tracked.deferred:
                self.add(flow, t, "sent_after_deferral")
        elif tracked is None:
            self.sends[send.idempotency_key] = _Send(flow or NO_FLOW)
            self.sends[send.idempotency_key].final = "sent"
        if not self.counted(t):
            return
        day = self.day(t)
        counts = self.counts[flow or NO_FLOW][day]
        counts["sent"] += 1
        counts["segments"] += command.segments
        self.cost[flow or NO_FLOW][day] += cost
        self._load(command, t, sender_type, command.sender_mps or mps, cost)

    def _load(self, command: DispatchCommand, t: float, sender_type: str, mps: float,
              cost: Decimal) -> None:
        s = self.senders.get(command.sender)
        if s is None:
            s = self.senders[command.sender] = {
                "type": sender_type, "mps": mps, "texts": 0, "segments": 0,
                "minutes": Counter(), "seconds": Counter(), "free_at": 0.0,
                "max_delay": 0.0, "delayed": 0, "cost": Decimal(0)}
        segments = command.segments
        s["texts"] += 1
        s["segments"] += segments
        s["cost"] += cost
        s["minutes"][int(t // 60)] += segments
        s["seconds"][int(t)] += segments
        start = max(t, s["free_at"])
        s["free_at"] = start + segments / mps if mps > 0 else start
        delay = start - t
        if delay > s["max_delay"]:
            s["max_delay"] = delay
        if delay > 1.0:
            s["delayed"] += 1

    def dead_letter(self, letter: DeadLetter, t: float) -> None:
        if self.counted(t):
            self.letters[letter.reason] += 1

    # -- the report --------------------------------------------------------------------
    def report(self, *, flows: dict[str, str], **fields: Any) -> BacktestReport:
        out: dict[str, FlowReport] = {}
        for flow_id in sorted(set(flows) | set(self.counts) | set(self.cost)):
            days = self.counts.get(flow_id, {})
            totals: Counter[str] = Counter()
            for counts in days.values():
                totals.update(counts)
            cost_days = self.cost.get(flow_id, {})
            out[flow_id] = FlowReport(
                flow_id=flow_id, category=flows.get(flow_id),
                totals=dict(sorted(totals.items())),
                days={d: dict(sorted(c.items())) for d, c in sorted(days.items())},
                cost=str(sum(cost_days.values(), Decimal(0))),
                cost_by_day={d: str(c) for d, c in sorted(cost_days.items())},
                revenue={c: str(v) for c, v in sorted(self.revenue.get(flow_id, {}).items())})
        pending = Counter(f"active:{flow}" for flow in self.active.values())
        pending.update(f"deferred:{s.flow}" for s in self.sends.values()
                       if s.final is None and s.deferred)
        return BacktestReport(flows=out, senders=self._sender_report(),
                              dead_letters=dict(self.letters.most_common()),
                              pending=dict(sorted(pending.items())), timezone=self.tz_name,
                              currency=self.prices.currency, prices=self.prices.source, **fields)

    def _sender_report(self) -> list[SenderLoad]:
        loads = []
        for number, s in sorted(self.senders.items()):
            minute, busiest = max(s["minutes"].items(), key=lambda kv: (kv[1], -kv[0]),
                                  default=(None, 0))
            capacity = s["mps"] * 60
            loads.append(SenderLoad(
                sender=number, type=s["type"], mps=s["mps"], texts=s["texts"],
                segments=s["segments"],
                busiest_minute=iso(minute * 60) if minute is not None else None,
                busiest_minute_segments=busiest, capacity_per_minute=capacity,
                busiest_load=round(busiest / capacity, 4) if capacity else 0.0,
                busiest_second_segments=max(s["seconds"].values(), default=0),
                max_delay_seconds=round(s["max_delay"], 3), delayed_texts=s["delayed"],
                cost=str(s["cost"])))
        return loads


# --- text ---------------------------------------------------------------------------------

ROWS_FIRST = ("enrolled", "enrolled_control", "sent", "held_out", "segments")


def _label(metric: str) -> str:
    head, _, reason = metric.partition(":")
    names = {"enrolled": "enrolled", "enrolled_control": "  of them held out (control)",
             "sent": "texts that would be sent", "held_out": "texts held out (control)",
             "segments": "segments", "completed": "completed", "converted": "converted",
             "sent_after_deferral": "sent after a deferral", "orders": "orders placed",
             "opted_out": "opted out", "opted_in": "opted in"}
    if not reason:
        return names.get(head, head)
    kinds = {"not_enrolled": "not enrolled", "exited": "exited", "suppressed": "suppressed",
             "dropped": "dropped", "deferred": "deferred", "rejected": "rejected"}
    if head in ("suppressed", "dropped", "deferred"):
        base = reason.split(":", 1)[-1] if reason.startswith("no_allowed_window:") else reason
        return f"{kinds[head]}: {group_of(base)} ({reason})"
    return f"{kinds.get(head, head)}: {reason}"


def _order(metric: str) -> tuple[int, str]:
    if metric in ROWS_FIRST:
        return ROWS_FIRST.index(metric), ""
    head = metric.split(":", 1)[0]
    rank = {"not_enrolled": 10, "completed": 20, "exited": 21, "converted": 22,
            "suppressed": 30, "dropped": 31, "deferred": 32, "sent_after_deferral": 33}
    return rank.get(head, 40), _label(metric)


def _when(text: str | None) -> str:
    """``2026-11-23T00:00:00.5Z`` -> ``2026-11-23 00:00Z`` (reports show minutes)."""
    return f"{text[:10]} {text[11:16]}Z" if text and len(text) >= 16 else (text or "-")


def render_text(report: BacktestReport, max_days: int = 10) -> str:
    lines = [f"backtest of {report.flows_dir} (policy {report.policy}) on {report.source}",
             f"  {report.events:,} events from {_when(report.first_event)} to "
             f"{_when(report.last_event)}; clock ran to {_when(report.clock_end)}; "
             f"{report.seconds:.1f} s ({report.events_per_second:,.0f} events/s)"]
    if report.report_from or report.report_to:
        lines.append(f"  counted from {_when(report.report_from) if report.report_from else 'the start'}"
                     f" to {_when(report.report_to) if report.report_to else 'the end'} "
                     f"(days in {report.timezone}); cost: {report.prices} ({report.currency})")
    else:
        lines.append(f"  days in {report.timezone}; cost: {report.prices} ({report.currency})")
    if report.consent_preloaded:
        lines.append(f"  consent: {report.consent_preloaded:,} phone ledgers from the phones "
                     "table, then the events' own consent")
    for note in report.notes:
        lines.append(f"  note: {note}")
    for flow in report.flows.values():
        if flow.flow_id == NO_FLOW:
            continue
        lines.append("")
        if not flow.totals:
            lines.append(f"{flow.flow_id} ({flow.category or '?'}): nothing in this window")
            continue
        lines.extend(_flow_table(flow, report.currency, max_days))
    if report.senders:
        lines.append("")
        lines.append("senders       type         MPS     texts   segments  busiest minute (UTC)   "
                     "segs  load   peak/s  max wait  est. cost")
        for s in report.senders:
            lines.append(
                f"{s.sender:<13} {s.type:<11} {s.mps:>5g} {s.texts:>9,} {s.segments:>10,}  "
                f"{(s.busiest_minute or '-')[:16]:<21} {s.busiest_minute_segments:>6,} "
                f"{s.busiest_load:>5.0%} {s.busiest_second_segments:>7,} "
                f"{_wait(s.max_delay_seconds):>9}  {money(Decimal(s.cost), report.currency)}")
        over = [s for s in report.senders if s.busiest_load > 1]
        for s in over:
            lines.append(f"  {s.sender}: its busiest minute needs {s.busiest_load:.0%} of its "
                         f"{s.mps:g} MPS; {s.delayed_texts:,} texts would leave more than a "
                         f"second late (at most {_wait(s.max_delay_seconds)})")
    other = report.flows.get(NO_FLOW)
    extra = []
    if other is not None:
        extra += [f"{_label(k)} {v:,}" for k, v in other.totals.items()]
    if report.dead_letters:
        extra.append("dead letters " + ", ".join(f"{k} {v:,}" for k, v in report.dead_letters.items()))
    if report.pending:
        extra.append("still pending at the end " + ", ".join(
            f"{k} {v:,}" for k, v in report.pending.items()))
    if extra:
        lines.append("")
        lines.extend(f"  {line}" for line in extra)
    return "\n".join(lines)


def _wait(seconds: float) -> str:
    if seconds < 1:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _flow_table(flow: FlowReport, currency: str, max_days: int) -> list[str]:
    days = list(flow.days)
    shown = days[-max_days:] if len(days) > max_days else days
    width = max([34] + [len(_label(m)) + 2 for m in flow.totals])
    head = f"{flow.flow_id} ({flow.category or '?'})"
    lines = [f"{head:<{width}}" + "".join(f"{d[5:]:>8}" for d in shown) + f"{'total':>10}"]
    if len(days) > len(shown):
        lines[0] += f"   (last {len(shown)} of {len(days)} days)"
    for metric in sorted(flow.totals, key=_order):
        row = f"  {_label(metric):<{width - 2}}"
        row += "".join(f"{flow.days[d].get(metric, 0):>8,}" for d in shown)
        lines.append(row + f"{flow.totals[metric]:>10,}")
    cost = f"  {'est. cost (' + currency + ')':<{width - 2}}"
    cost += "".join(f"{money(Decimal(flow.cost_by_day.get(d, '0')), currency):>8}"
                    for d in shown)
    lines.append(cost + f"{money(Decimal(flow.cost), currency):>10}")
    for cur, amount in flow.revenue.items():
        lines.append(f"  {'conversion revenue (' + cur + ')':<{width - 2}}"
                     + " " * (8 * len(shown)) + f"{money(Decimal(amount), cur):>10}")
    return lines


# --- compare ------------------------------------------------------------------------------

def compare_text(a: BacktestReport, b: BacktestReport) -> str:
    """Per flow, every total that differs between two runs on the same events."""
    lines = [f"compare: A = {a.flows_dir}   B = {b.flows_dir}   (same {a.events:,} events, "
             f"policy {a.policy})", ""]
    lines.append(f"{'flow / metric':<52}{'A':>10}{'B':>10}{'B - A':>10}")
    same = True
    for flow_id in sorted(set(a.flows) | set(b.flows)):
        if flow_id == NO_FLOW:
            continue
        fa, fb = a.flows.get(flow_id), b.flows.get(flow_id)
        if fa is None or fb is None:
            present = fa or fb
            assert present is not None
            texts = present.totals.get("sent", 0)
            lines.append(f"{flow_id} (only in {'A' if fb is None else 'B'}: "
                         f"{present.totals.get('enrolled', 0):,} enrolled, {texts:,} texts)")
            same = False
            continue
        metrics = sorted(set(fa.totals) | set(fb.totals), key=_order)
        rows = []
        for metric in metrics:
            va, vb = fa.totals.get(metric, 0), fb.totals.get(metric, 0)
            if va != vb:
                rows.append(f"  {_label(metric):<50}{va:>10,}{vb:>10,}{vb - va:>+10,}")
        ca, cb = Decimal(fa.cost), Decimal(fb.cost)
        if ca != cb:
            rows.append(f"  {'est. cost (' + a.currency + ')':<50}{money(ca, a.currency):>10}"
                        f"{money(cb, a.currency):>10}{_signed(cb - ca, a.currency):>10}")
        if rows:
            same = False
            lines.append(flow_id)
            lines.extend(rows)
    for label, metric in (("texts that would be sent", "sent"), ("segments", "segments")):
        va = sum(f.totals.get(metric, 0) for k, f in a.flows.items() if k != NO_FLOW)
        vb = sum(f.totals.get(metric, 0) for k, f in b.flows.items() if k != NO_FLOW)
        if va != vb:
            lines.append(f"{'all flows: ' + label:<52}{va:>10,}{vb:>10,}{vb - va:>+10,}")
    ca = sum((Decimal(f.cost) for f in a.flows.values()), Decimal(0))
    cb = sum((Decimal(f.cost) for f in b.flows.values()), Decimal(0))
    if ca != cb:
        lines.append(f"{'all flows: est. cost (' + a.currency + ')':<52}{money(ca, a.currency):>10}"
                     f"{money(cb, a.currency):>10}{_signed(cb - ca, a.currency):>10}")
    senders_a = {s.sender: s for s in a.senders}
    senders_b = {s.sender: s for s in b.senders}
    for number in sorted(set(senders_a) | set(senders_b)):
        sa, sb = senders_a.get(number), senders_b.get(number)
        pa = (sa.segments, sa.busiest_minute_segments) if sa else (0, 0)
        pb = (sb.segments, sb.busiest_minute_segments) if sb else (0, 0)
        if pa != pb:
            same = False
            lines.append(f"sender {number}: segments {pa[0]:,} -> {pb[0]:,}, busiest minute "
                         f"{pa[1]:,} -> {pb[1]:,} segments")
    if same:
        lines.append("(no differences)")
    return "\n".join(lines)


def _signed(value: Decimal, currency: str) -> str:
    return ("+" if value >= 0 else "-") + money(abs(value), currency)
