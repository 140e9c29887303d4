"""The report as a rich table on the console: one row per flow and variant, then the lift."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from decimal import Decimal

from rich import box
from rich.console import Console
from rich.table import Table

from smsflow.report import money
from smsflow.report.summary import FlowResult, Report


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _signed_pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f}%"


def interval(ci: tuple[float, float] | None, scale: float = 100.0, unit: str = "%") -> str:
    return "—" if ci is None else f"[{ci[0] * scale:+.1f}, {ci[1] * scale:+.1f}]{unit}"


def render(report: Report, console: Console | None = None, *, incrementality: bool = True,
           lasting: bool = True, accounting: bool = False) -> None:
    """Print the chosen sections: the holdout funnel and lift, what lasts (30/60/90 days,
    CUPED), the accounting of enrollments and sends."""
    # Piped or redirected output is not wrapped at 80 columns: a wide table stays readable.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    if incrementality:
        _incrementality(report, console)
    if lasting and report.lasting is not None:
        from smsflow.report.render_lasting import render_lasting

        render_lasting(report.lasting, console)
    if accounting and report.accounting is not None:
        from smsflow.report.render_accounting import render_accounting

        render_accounting(report.accounting, console)


def _incrementality(report: Report, console: Console) -> None:
    level = f"{1 - report.alpha:.0%}"
    table = Table(title=f"smsflow incrementality report — {report.source or 'outcomes'}",
                  caption=_caption(report), box=box.SIMPLE_HEAD)
    headers = ("flow", "variant", "enrolled", "sent", "deliv.", "clicked", "conv.", "rate",
               f"{level} CI", "revenue", "rev/enr.", "last touch")
    for name in headers:
        table.add_column(name, justify="left" if name in ("flow", "variant") else "right")
    for flow in report.flows:
        for arm in flow.arms.values():
            low, high = report.rate_ci(arm)
            table.add_row(flow.flow_id, arm.variant, *(f"{n:,}" for n in arm.funnel().values()),
                          pct(arm.conversion_rate), f"{low * 100:.1f}–{high * 100:.1f}%",
                          _per_currency(arm.revenue), _per_currency(arm.revenue_per_enrolled),
                          f"{arm.attributed_conversions:,}")
        table.add_section()
    console.print(table)
    for flow in report.flows:
        for line in lift_lines(flow, level):
            console.print(line)


def lift_lines(flow: FlowResult, level: str) -> list[str]:
    """Plain sentences for one flow: lifts with intervals, p-values, and the power warning."""
    head = f"[bold]{flow.flow_id}[/bold]:"
    if flow.conversion is None:
        return [f"{head} no comparison — the flow needs enrolled customers in both "
                "treatment and control (is a holdout configured?)"]
    c = flow.conversion
    lines = [f"{head} absolute lift {c.diff * 100:+.2f} pp {interval(c.diff_ci, unit=' pp')}, "
             f"relative lift {_signed_pct(c.lift)} {interval(c.lift_ci)} ({level} CI), "
             f"p = {c.p_value:.3g} ({'Fisher exact' if c.test == 'fisher' else 'z test'})"]
    for currency, r in flow.revenue.items():
        if r is not None:
            lines.append(f"  revenue per enrolled customer, {currency}: {r.diff:+,.2f} "
                         f"[{r.diff_ci[0]:+,.2f}, {r.diff_ci[1]:+,.2f}] (Welch), "
                         f"p = {r.p_value:.3g}")
    if flow.power is not None and flow.power.warning:
        lines.append(f"  [yellow]warning:[/yellow] {flow.power.warning}")
    return lines


def _per_currency(amounts: Mapping[str, Decimal]) -> str:
    """One line per currency (never one sum across currencies); 0.00 with no revenue."""
    if not amounts:
        return "0.00"
    return "\n".join(money.fmt(amount, currency) for currency, amount in amounts.items())


def _caption(report: Report) -> str:
    w = report.windows
    text = (f"{report.records:,} records; conversions credited within each flow's goal window; "
            f"last touch: click {w.click / 86400:g} d, delivery {w.delivery / 3600:g} h")
    if report.skipped_lines:
        text += f"; {report.skipped_lines:,} malformed records skipped"
    if report.invalid:
        text += f"; {report.invalid:,} records not shaped like outcomes left out"
    if report.duplicates:
        text += f"; {report.duplicates:,} repeated records (same outcome_id) counted once"
    return text
