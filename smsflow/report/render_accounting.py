"""The accounting section on the console: per flow, how every enrollment and send ended or
what it is waiting for, and the items that did neither."""

from __future__ import annotations

from collections import Counter

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from smsflow.report.accounting import Accounting, Flag
from smsflow.report.render_lasting import when

MAX_FLAGS_SHOWN = 25


def _reasons(counts: Counter, skip: tuple[str, ...] = ()) -> Text:
    """One "count reason" line per reason, as plain text (reasons are data, not markup)."""
    items = [(r, n) for r, n in counts.most_common() if r not in skip]
    return Text("\n".join(f"{n:,} {r}" for r, n in items) or "0")


def render_accounting(accounting: Accounting, console: Console) -> None:
    console.print()
    console.rule("[bold]accounting: every enrollment and send ended, or is pending[/bold]")
    console.print(f"as of {when(accounting.as_of)} ({accounting.as_of_source}); a pending item "
                  f"is overdue {accounting.grace / 60:g} min after its due time")
    if not accounting.flows:
        console.print("no enrollments or sends in the data")
        return
    console.print(_enrollments(accounting))
    console.print(_sends(accounting))
    _flags(accounting, console)


def _enrollments(accounting: Accounting) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="enrollments (by enrollment_id)")
    for name in ("flow", "enrolled", "ended", "completed", "goal reached", "exited (other)",
                 "active", "next due", "flagged"):
        table.add_column(name, justify="left" if name == "flow" else "right")
    for flow in accounting.flows:
        e = flow.enrollments
        if not (e.enrolled or e.ended or e.active or e.flagged):
            continue
        table.add_row(Text(flow.flow_id), f"{e.enrolled:,}", f"{e.ended:,}",
                      f"{e.completed:,}", f"{e.goal_reached:,}",
                      _reasons(e.exited, skip=("goal_reached",)), f"{e.active:,}",
                      when(e.next_due), _flagged(e.flagged))
    return table


def _sends(accounting: Accounting) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="sends (by idempotency_key)")
    for name in ("flow", "sends", "sent", "would send", "suppressed", "dropped", "failed",
                 "pending", "next due", "flagged"):
        table.add_column(name, justify="left" if name == "flow" else "right")
    for flow in accounting.flows:
        s = flow.sends
        if not s.keys:
            continue
        table.add_row(Text(flow.flow_id), f"{s.keys:,}", f"{s.sent:,}", f"{s.would_send:,}",
                      _reasons(s.suppressed), _reasons(s.dropped), _reasons(s.failed),
                      _reasons(s.pending), when(s.next_due), _flagged(s.flagged))
    return table


def _flagged(n: int) -> str:
    return f"[bold red]{n:,}[/bold red]" if n else "0"


def _flags(accounting: Accounting, console: Console) -> None:
    flags = accounting.flags
    if not flags:
        console.print("[green]balanced: every enrollment and send has a terminal outcome or "
                      "is pending on time[/green]")
        return
    summary = Counter((f.kind, f.problem) for f in flags)
    console.print(f"[bold red]{len(flags):,} flagged[/bold red]: " + "; ".join(
        f"{n:,} {kind} {problem}" for (kind, problem), n in summary.most_common()))
    for flag in flags[:MAX_FLAGS_SHOWN]:
        console.print("  " + flag_line(flag, accounting.as_of), emoji=False)
    if len(flags) > MAX_FLAGS_SHOWN:
        console.print(f"  … and {len(flags) - MAX_FLAGS_SHOWN:,} more (all of them in --json)")


def flag_line(flag: Flag, as_of: float | None) -> str:
    due = ""
    if flag.due is not None:
        late = "" if as_of is None else f", {(as_of - flag.due) / 3600:,.1f} h ago"
        due = f" (due {when(flag.due)}{late})"
    who = f", customer {escape(flag.customer_id)}" if flag.customer_id else ""
    return (f"{flag.kind} {escape(flag.key)} ({escape(flag.flow_id)}{who}): "
            f"{flag.problem} — {flag.detail}{due}")
