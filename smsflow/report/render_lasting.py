"""The lasting-effect section on the console: repeat purchase and revenue per enrolled
customer at 30/60/90 days per flow and arm, then the lift, plain beside CUPED."""

from __future__ import annotations

from datetime import datetime, timezone

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from smsflow.report import money
from smsflow.report.cuped import CupedComparison, Estimate
from smsflow.report.lasting import HorizonResult, Lasting


def when(t: float | None) -> str:
    if t is None:
        return "—"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _range(ci: tuple[float, float] | None, scale: float = 100.0, places: int = 1,
           signed: bool = False, unit: str = "") -> str:
    if ci is None:
        return "—"
    sign = "+" if signed else ""
    return f"[{ci[0] * scale:{sign},.{places}f}, {ci[1] * scale:{sign},.{places}f}]{unit}"


def render_lasting(lasting: Lasting, console: Console) -> None:
    level = f"{1 - lasting.alpha:.0%}"
    days = "/".join(str(d) for d in lasting.horizons)
    console.print()
    console.rule(f"[bold]what lasts: repeat purchase and revenue {days} days after "
                 "enrollment[/bold]")
    console.print(f"as of {when(lasting.as_of)} ({lasting.as_of_source}); "
                  f"{lasting.orders:,} distinct orders in the data")
    for note in lasting.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", emoji=False)
    if not lasting.flows:
        console.print("no enrollments")
        return
    if not lasting.orders:
        return
    console.print(_arms_table(lasting, level))
    console.print(_lift_table(lasting, level))
    for flow in lasting.flows:
        for note in flow.notes:
            console.print(f"[yellow]note[/yellow] [bold]{escape(flow.flow_id)}[/bold]: "
                          f"{escape(note)}", emoji=False)
    console.print(
        "[dim]Each customer counts once per arm, from their first enrollment; at N days only "
        "customers whose window (enrollment, enrollment + N days] has closed count "
        "(counted / enrolled). Money is summed exactly per currency, never across. CUPED "
        "covariate: orders before enrollment (repeat rate), spend before enrollment in the "
        "same currency (revenue). Lift intervals: Welch t (difference), delta method "
        f"(relative), {level}.[/dim]")


def _arms_table(lasting: Lasting, level: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="per flow and arm")
    for name in ("flow", "days", "arm", "counted / enrolled", "repeat buyers", "repeat rate",
                 f"{level} CI", "revenue / enrolled", f"{level} CI ", "revenue total"):
        table.add_column(name, justify="left" if name in ("flow", "arm") else "right",
                         no_wrap=name == "flow")
    for flow in lasting.flows:
        for result in flow.horizons:
            for arm in result.arms.values():
                currencies = list(arm.revenue.values())
                table.add_row(
                    Text(flow.flow_id), str(result.days), arm.variant,
                    f"{arm.closed:,} / {arm.enrolled:,}", f"{arm.repeaters:,}",
                    _pct(arm.rate), _range(arm.rate_ci),
                    "\n".join(money.fmt(r.per_customer, r.currency) for r in currencies) or "—",
                    "\n".join(_range(r.ci, 1.0, 2) for r in currencies) or "—",
                    "\n".join(money.fmt(r.total, r.currency) for r in currencies) or "—")
        table.add_section()
    return table


def _lift_table(lasting: Lasting, level: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="lift, treatment − control: plain, then CUPED")
    for name in ("flow", "days", "metric", "estimate", "lift", f"{level} CI", "relative lift",
                 f"{level} CI ", "p", "variance removed"):
        table.add_column(name, justify="left" if name in ("flow", "metric", "estimate")
                         else "right", no_wrap=name == "flow")
    for flow in lasting.flows:
        for result in flow.horizons:
            for row in _lift_rows(result):
                table.add_row(Text(flow.flow_id), str(result.days), *row)
        table.add_section()
    return table


def _lift_rows(result: HorizonResult) -> list[tuple[str, ...]]:
    if "control" not in result.arms or "treatment" not in result.arms:
        return [("—", "no holdout", *("",) * 5)]
    if result.repeat is None:
        closes = (f"first window closes {when(result.first_close)}"
                  if all(a.closed == 0 for a in result.arms.values())
                  else "fewer than 2 customers counted in an arm")
        return [("—", closes, *("",) * 5)]
    rows = _rows("repeat rate", result.repeat, pp=True)
    for currency, comparison in result.revenue.items():
        if comparison is not None:
            rows += _rows(f"revenue / enrolled, {currency}", comparison, pp=False)
    return rows


def _rows(metric: str, c: CupedComparison, pp: bool) -> list[tuple[str, ...]]:
    return [(metric, "plain", *_estimate(c.plain, pp), ""),
            ("", "CUPED", *_estimate(c.cuped, pp), f"{c.variance_reduction * 100:.1f}%")]


def _estimate(e: Estimate, pp: bool) -> tuple[str, ...]:
    if pp:
        lift = (f"{e.diff * 100:+.2f} pp", _range(e.diff_ci, places=2, signed=True))
    else:
        lift = (f"{e.diff:+,.2f}", _range(e.diff_ci, 1.0, 2, signed=True))
    return (*lift, _signed(e.lift), _range(e.lift_ci, signed=True, unit="%"),
            f"{e.p_value:.3g}")


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f}%"
