"""The report as CSV (one row per flow and variant) and as JSON (the full structure, with
the lasting-effect and accounting sections).

Both are built from :func:`rows`/:func:`to_dict`, so a spreadsheet and a notebook see the
same numbers as the table and the chart.
"""

from __future__ import annotations

import csv
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import orjson

from smsflow.clock import iso
from smsflow.report.accounting import Accounting
from smsflow.report.aggregate import Arm
from smsflow.report.cuped import CupedComparison
from smsflow.report.lasting import Lasting
from smsflow.report.summary import FlowResult, Report


def rows(report: Report) -> list[dict]:
    """Flat rows: one arm's funnel and rate, then its flow's comparison (repeated per arm)."""
    return [{"flow_id": flow.flow_id, "variant": arm.variant, **arm_fields(report, arm),
             **comparison_fields(flow)}
            for flow in report.flows for arm in flow.arms.values()]


def arm_fields(report: Report, arm: Arm) -> dict:
    """One arm; money per currency as exact decimal strings (``revenue_USD``, ...)."""
    low, high = report.rate_ci(arm)
    fields = {**arm.funnel(), "conversion_rate": arm.conversion_rate, "rate_ci_low": low,
              "rate_ci_high": high, "currency": ",".join(arm.currencies),
              "last_touch_conversions": arm.attributed_conversions}
    per_enrolled = arm.revenue_per_enrolled
    for currency, total in arm.revenue.items():
        fields[f"revenue_{currency}"] = str(total)
        fields[f"revenue_per_enrolled_{currency}"] = str(_cents(per_enrolled[currency]))
    for currency, total in sorted(arm.attributed_revenue.items()):
        fields[f"last_touch_revenue_{currency}"] = str(total)
    return fields


def comparison_fields(flow: FlowResult) -> dict:
    c, p = flow.conversion, flow.power
    fields = {**_with_ci("abs_lift", c and c.diff, c and c.diff_ci),
              **_with_ci("rel_lift", c and c.lift, c and c.lift_ci),
              "p_value": c and c.p_value, "test": c and c.test}
    for currency, r in flow.revenue.items():
        fields.update(_with_ci(f"revenue_diff_{currency}", r and r.diff, r and r.diff_ci))
        fields[f"revenue_p_value_{currency}"] = r and r.p_value
    return {**fields, "needed_treatment": p and p.needed_t, "needed_control": p and p.needed_c,
            "underpowered": True if p is None else p.underpowered}


def _with_ci(name: str, value, ci) -> dict:
    low, high = ci or (None, None)
    return {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}


def to_dict(report: Report) -> dict:
    """Everything in the report, nested per flow, for notebooks and dashboards."""
    w = report.windows
    return {
        "source": report.source, "records": report.records,
        "skipped_lines": report.skipped_lines, "alpha": report.alpha,
        "windows": {"click_seconds": w.click, "delivery_seconds": w.delivery,
                    "default_goal_seconds": w.default_goal, "goal_seconds": dict(w.goal)},
        "flows": [{"flow_id": flow.flow_id,
                   "arms": {arm.variant: arm_fields(report, arm) for arm in flow.arms.values()},
                   "conversion": flow.conversion and asdict(flow.conversion),
                   "revenue_per_enrolled": {currency: r and asdict(r)
                                            for currency, r in flow.revenue.items()},
                   "power": flow.power and asdict(flow.power)}
                  for flow in report.flows],
        "duplicates": report.duplicates, "invalid_records": report.invalid,
        "lasting": report.lasting and lasting_dict(report.lasting),
        "accounting": report.accounting and accounting_dict(report.accounting),
    }


def _iso(t: float | None) -> str | None:
    return None if t is None else iso(t)


def _comparison(c: CupedComparison | None) -> dict | None:
    if c is None:
        return None
    return {"plain": asdict(c.plain), "cuped": asdict(c.cuped), "theta": c.theta,
            "correlation": c.correlation, "variance_reduction": c.variance_reduction,
            "ci_width_ratio": c.ci_width_ratio}


def lasting_dict(lasting: Lasting) -> dict:
    """Repeat purchase and revenue per flow, horizon and arm; money as exact decimal strings."""
    return {
        "as_of": _iso(lasting.as_of), "as_of_source": lasting.as_of_source,
        "horizons_days": list(lasting.horizons), "orders": lasting.orders,
        "alpha": lasting.alpha, "power": lasting.power, "target_lift": lasting.target_lift,
        "min_holdout_days": lasting.min_holdout_days, "notes": lasting.notes,
        "rules": {"customer_counted": "once per arm, from the first enrollment",
                  "window": "(enrollment event_time, + N days]; only closed windows count",
                  "covariate_repeat_rate": "orders before enrollment",
                  "covariate_revenue": "spend before enrollment, same currency"},
        "flows": [{
            "flow_id": flow.flow_id, "enrolled": flow.enrolled,
            "first_enrollment": _iso(flow.first_enrollment),
            "first_control_enrollment": _iso(flow.first_control),
            "holdout_days": flow.holdout_days,
            "customers_enrolled_more_than_once": flow.multi_enrolled,
            "customers_in_both_arms": flow.both_arms,
            "covariate_sources": flow.covariate_sources,
            "orders_without_revenue": flow.unpriced_orders,
            "power": flow.power and asdict(flow.power), "notes": flow.notes,
            "horizons": [{
                "days": h.days, "first_window_closes": _iso(h.first_close),
                "arms": {v: {"enrolled": a.enrolled, "counted": a.closed,
                             "repeat_buyers": a.repeaters, "repeat_rate": a.rate,
                             "repeat_rate_ci": a.rate_ci,
                             "revenue": {c: {"total": str(r.total),
                                             "per_enrolled": str(_cents(r.per_customer)),
                                             "per_enrolled_ci": r.ci}
                                         for c, r in a.revenue.items()}}
                         for v, a in h.arms.items()},
                "repeat_rate_lift": _comparison(h.repeat),
                "revenue_lift": {c: _comparison(r) for c, r in h.revenue.items()},
            } for h in flow.horizons],
        } for flow in lasting.flows],
    }


def _cents(amount: Decimal) -> Decimal:
    """Per-customer means to 1/10,000 of the unit (totals stay exact)."""
    return amount.quantize(Decimal("0.0001"))


def accounting_dict(accounting: Accounting) -> dict:
    """Per flow: the balance of enrollments and sends; every flagged and pending item."""
    return {
        "as_of": _iso(accounting.as_of), "as_of_source": accounting.as_of_source,
        "grace_seconds": accounting.grace, "ok": accounting.ok,
        "flows": [{
            "flow_id": f.flow_id,
            "enrollments": {"enrolled": f.enrollments.enrolled, "ended": f.enrollments.ended,
                            "completed": f.enrollments.completed,
                            "goal_reached": f.enrollments.goal_reached,
                            "exited": dict(f.enrollments.exited),
                            "active": f.enrollments.active,
                            "next_due": _iso(f.enrollments.next_due),
                            "flagged": f.enrollments.flagged},
            "sends": {"keys": f.sends.keys, "sent": f.sends.sent,
                      "would_send": f.sends.would_send, "suppressed": dict(f.sends.suppressed),
                      "dropped": dict(f.sends.dropped), "failed": dict(f.sends.failed),
                      "pending": dict(f.sends.pending), "next_due": _iso(f.sends.next_due),
                      "flagged": f.sends.flagged},
        } for f in accounting.flows],
        "flags": [{"kind": flag.kind, "flow_id": flag.flow_id, "key": flag.key,
                   "customer_id": flag.customer_id, "problem": flag.problem,
                   "detail": flag.detail, "due": _iso(flag.due)}
                  for flag in accounting.flags],
        "pending": [{"kind": p.kind, "flow_id": p.flow_id, "key": p.key,
                     "customer_id": p.customer_id, "state": p.state, "due": _iso(p.due)}
                    for p in accounting.pending],
    }


def write_csv(report: Report, path: str | Path) -> Path:
    path, data = Path(path), rows(report)
    # Rows differ in their currency columns: the header is the union, in first-seen order.
    fieldnames = list(dict.fromkeys(name for row in data for name in row))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames or ["flow_id", "variant"])
        writer.writeheader()
        writer.writerows(data)
    return path


def write_json(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(orjson.dumps(to_dict(report), option=orjson.OPT_INDENT_2
                                  | orjson.OPT_SERIALIZE_NUMPY))
    return path
