"""Accounting an SRE can check: every enrollment and every send ends, or is visibly pending.

From the outcomes topic alone, per flow:

* **enrollments** (by ``enrollment_id``): enrolled; ended — ``completed`` or ``exited`` (by
  reason; ``goal_reached`` is one); or pending — the latest ``scheduled`` record's
  ``details.due`` is the timer the enrollment waits on.
* **sends** (by ``idempotency_key``): a terminal outcome — ``sent``, ``suppressed`` (by
  reason), ``dropped``, ``failed`` (by reason; a ``failed`` *receipt*, which names a provider
  message, is a delivery result of a sent text, not the send's outcome) or ``would_send``
  (control) — or pending: the latest ``deferred`` (``details.until``, older records
  ``details.not_before``), ``retried`` (``details.retry_at``) or ``scheduled``
  (``details.due``) record.

An item is **flagged** when it has neither a terminal outcome nor a pending one, when its
pending due time is more than ``grace`` before the report's "as of" time (the latest time in
the data unless given), and for the shapes a lost or doubled text leaves behind: a send
suppressed only as a ``duplicate`` (the marker of a send never seen sent), two ``sent``
records with different provider ids, receipts without any outcome, an enrollment ended in
two different ways, records of an enrollment that was never ``enrolled``.

What this cannot see: a send command that left the flow engine and then produced no record
at all (the engine records a treatment send only through the gate and the dispatcher).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from smsflow.report.records import details, epoch, horizon, processing_time, text

DEFAULT_GRACE = 600.0   # seconds a due timer or deferral may be late before it is flagged
NO_FLOW = "(no flow)"

ENROLLMENT_TERMINAL = frozenset({"completed", "exited"})
SEND_TERMINAL = frozenset({"sent", "would_send", "failed", "dropped", "suppressed"})
SEND_PENDING = {"deferred": ("until", "not_before"), "retried": ("retry_at",),
                "scheduled": ("due",)}
SEND_AFTERMATH = frozenset({"delivered", "undelivered", "receipt", "clicked"})
DUPLICATE_REASONS = frozenset({"duplicate"})


@dataclass(frozen=True)
class Flag:
    kind: str                 # enrollment | send
    flow_id: str
    key: str                  # enrollment_id or idempotency_key
    customer_id: str | None
    problem: str              # machine-readable, see PROBLEMS
    due: float | None = None

    @property
    def detail(self) -> str:
        return PROBLEMS.get(self.problem, self.problem)


@dataclass(frozen=True)
class Pending:
    """An enrollment or send that is waiting, on time, for ``due``."""

    kind: str                 # enrollment | send
    flow_id: str
    key: str
    customer_id: str | None
    state: str                # scheduled (a timer) | deferred | retried
    due: float


PROBLEMS = {
    "no_outcome": "no terminal outcome and nothing pending",
    "overdue": "pending, but its due time passed more than the grace period ago",
    "no_due_time": "pending, but its record names no readable due time",
    "two_ends": "ended more than one way (e.g. completed and exited)",
    "not_enrolled": "records for an enrollment that has no enrolled record",
    "duplicate_only": "suppressed as a duplicate, but no record shows it was sent",
    "sent_twice": "sent more than once (different provider message ids)",
    "conflicting_outcomes": "more than one kind of terminal outcome",
    "receipt_only": "delivery receipts or clicks, but no send outcome",
}


@dataclass
class EnrollmentBalance:
    enrolled: int = 0
    completed: int = 0
    exited: Counter = field(default_factory=Counter)   # reason -> count
    active: int = 0
    next_due: float | None = None
    flagged: int = 0

    @property
    def goal_reached(self) -> int:
        return self.exited.get("goal_reached", 0)

    @property
    def ended(self) -> int:
        return self.completed + sum(self.exited.values())


@dataclass
class SendBalance:
    keys: int = 0
    sent: int = 0
    would_send: int = 0
    suppressed: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    pending: Counter = field(default_factory=Counter)   # deferred / retried / scheduled
    next_due: float | None = None
    flagged: int = 0

    @property
    def terminal(self) -> int:
        return (self.sent + self.would_send + sum(self.suppressed.values())
                + sum(self.dropped.values()) + sum(self.failed.values()))


@dataclass
class FlowAccount:
    flow_id: str
    enrollments: EnrollmentBalance = field(default_factory=EnrollmentBalance)
    sends: SendBalance = field(default_factory=SendBalance)


@dataclass
class Accounting:
    as_of: float | None
    as_of_source: str
    grace: float
    flows: list[FlowAccount]
    flags: list[Flag]
    pending: list[Pending] = field(default_factory=list)  # on time, soonest first

    @property
    def ok(self) -> bool:
        return not self.flags


def build_accounting(records: Sequence[Mapping], *, as_of: float | None = None,
                     grace: float = DEFAULT_GRACE, flow_id: str | None = None) -> Accounting:
    source = "given" if as_of is not None else "latest record"
    as_of = as_of if as_of is not None else horizon(records)
    by_enrollment: dict[str, list[tuple[int, Mapping]]] = defaultdict(list)
    by_key: dict[str, list[tuple[int, Mapping]]] = defaultdict(list)
    for index, r in enumerate(records):
        kind = r.get("type")
        if not isinstance(kind, str):
            continue
        key = text(r, "idempotency_key")
        if key and (kind in SEND_TERMINAL or kind in SEND_PENDING or kind in SEND_AFTERMATH):
            by_key[key].append((index, r))
        enrollment = text(r, "enrollment_id")
        # A record keyed by a send belongs to the send (a send-level scheduled is not the
        # enrollment's timer); enrolled and ending records belong to the enrollment anyway.
        if enrollment and (key is None or kind == "enrolled" or kind in ENROLLMENT_TERMINAL):
            by_enrollment[enrollment].append((index, r))
    flows: dict[str, FlowAccount] = {}
    flags: list[Flag] = []
    pending: list[Pending] = []
    flow_of: dict[str, str] = {}

    def account(flow: str) -> FlowAccount:
        return flows.setdefault(flow, FlowAccount(flow))

    for enrollment, items in by_enrollment.items():
        flow = _flow_of(items)
        flow_of[enrollment] = flow
        if flow_id not in (None, flow):
            continue
        flags.extend(_enrollment(account(flow).enrollments, enrollment, flow, items, as_of,
                                 grace, pending))
    for key, items in by_key.items():
        flow = _flow_of(items)
        if flow == NO_FLOW:
            enrollment = (_first_text(items, "enrollment_id") or key.rsplit(":", 1)[0])
            flow = flow_of.get(enrollment, NO_FLOW)
        if flow_id not in (None, flow):
            continue
        flags.extend(_send(account(flow).sends, key, flow, items, as_of, grace, pending))
    ordered = [flows[f] for f in sorted(flows, key=lambda f: (f == NO_FLOW, f))]
    flags.sort(key=lambda f: (f.flow_id, f.kind, f.problem, f.due or 0.0, f.key))
    pending.sort(key=lambda p: (p.due, p.flow_id, p.kind, p.key))
    return Accounting(as_of, source, grace, ordered, flags, pending)


def _first_text(items: Iterable[tuple[int, Mapping]], name: str) -> str | None:
    return next((value for _, r in items if (value := text(r, name))), None)


def _flow_of(items: list[tuple[int, Mapping]]) -> str:
    enrolled = [r for _, r in items if r.get("type") == "enrolled" and text(r, "flow_id")]
    if enrolled:
        return text(enrolled[0], "flow_id")  # type: ignore[return-value]
    return _first_text(items, "flow_id") or NO_FLOW


def _due(record: Mapping, names: Iterable[str]) -> float | None:
    extra = details(record)
    for name in names:
        value = epoch(extra.get(name))
        if value is not None:
            return value
    return None


def _latest(items: list[tuple[int, Mapping]]) -> tuple[int, Mapping]:
    """The record written last: by processing time, then position in the data."""
    def order(item: tuple[int, Mapping]) -> tuple[float, int]:
        t = processing_time(item[1])
        return (-math.inf if t is None else t, item[0])
    return max(items, key=order)


def _pending(balance_due: float | None, due: float | None) -> float | None:
    if due is None:
        return balance_due
    return due if balance_due is None else min(balance_due, due)


def _enrollment(balance: EnrollmentBalance, enrollment: str, flow: str,
                items: list[tuple[int, Mapping]], as_of: float | None,
                grace: float, waiting: list[Pending]) -> list[Flag]:
    customer = _first_text(items, "customer_id")
    flags: list[Flag] = []

    def flag(problem: str, due: float | None = None) -> None:
        flags.append(Flag("enrollment", flow, enrollment, customer, problem, due))

    if any(r.get("type") == "enrolled" for _, r in items):
        balance.enrolled += 1
    else:
        flag("not_enrolled")
    ends = {(r["type"], text(r, "reason") or "") for _, r in items
            if r.get("type") in ENROLLMENT_TERMINAL}
    timers = [(i, r) for i, r in items if r.get("type") == "scheduled"]
    if ends:
        if len(ends) > 1:
            flag("two_ends")
        kind, reason = min(ends)
        if kind == "completed":
            balance.completed += 1
        else:
            balance.exited[reason or "unknown"] += 1
    elif timers:
        balance.active += 1
        due = _due(_latest(timers)[1], SEND_PENDING["scheduled"])
        if due is None:
            flag("no_due_time")
        elif as_of is not None and due + grace < as_of:
            flag("overdue", due)
        else:
            balance.next_due = _pending(balance.next_due, due)
            waiting.append(Pending("enrollment", flow, enrollment, customer, "scheduled", due))
    else:
        flag("no_outcome")
    balance.flagged += bool(flags)
    return flags


def _send(balance: SendBalance, key: str, flow: str, items: list[tuple[int, Mapping]],
          as_of: float | None, grace: float, waiting: list[Pending]) -> list[Flag]:
    customer = _first_text(items, "customer_id")
    flags: list[Flag] = []

    def flag(problem: str, due: float | None = None) -> None:
        flags.append(Flag("send", flow, key, customer, problem, due))

    balance.keys += 1
    terminal: dict[str, list[Mapping]] = defaultdict(list)
    pending: list[tuple[int, Mapping]] = []
    duplicates = aftermath = 0
    for i, r in items:
        kind = r["type"]
        if kind == "failed" and text(r, "message_sid"):
            aftermath += 1   # a delivery receipt of a text the provider accepted
        elif kind == "suppressed" and text(r, "reason") in DUPLICATE_REASONS:
            duplicates += 1
        elif kind in SEND_TERMINAL:
            terminal[kind].append(r)
        elif kind in SEND_PENDING:
            pending.append((i, r))
        else:
            aftermath += 1
    sids = {text(r, "message_sid") for r in terminal.get("sent", [])} - {None}
    if len(sids) > 1:
        flag("sent_twice")
    if terminal:
        kinds = [k for k in ("sent", "would_send", "failed", "dropped", "suppressed")
                 if k in terminal]
        if len(kinds) > 1:
            flag("conflicting_outcomes")
        kind = kinds[0]
        reason = text(terminal[kind][0], "reason") or _code(terminal[kind][0]) or "unknown"
        if kind == "sent":
            balance.sent += 1
        elif kind == "would_send":
            balance.would_send += 1
        else:
            getattr(balance, kind)[reason] += 1
    elif pending:
        _, latest = _latest(pending)
        balance.pending[latest["type"]] += 1
        due = _due(latest, SEND_PENDING[latest["type"]])
        if due is None:
            flag("no_due_time")
        elif as_of is not None and due + grace < as_of:
            flag("overdue", due)
        else:
            balance.next_due = _pending(balance.next_due, due)
            waiting.append(Pending("send", flow, key, customer, latest["type"], due))
    elif duplicates:
        flag("duplicate_only")
    elif aftermath:
        flag("receipt_only")
    else:
        flag("no_outcome")
    balance.flagged += bool(flags)
    return flags


def _code(record: Mapping) -> str | None:
    code = record.get("error_code")
    return None if code in (None, "") else f"error {code}"
