"""The report as CSV (one row per flow and variant) and as JSON (the full structure).

Both are built from :func:`rows`/:func:`to_dict`, so a spreadsheet and a notebook see the
same numbers as the table and the chart.
"""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import orjson

from smsflow.report.aggregate import Arm
from smsflow.report.summary import FlowResult, Report


def rows(report: Report) -> list[dict]:
    """Flat rows: one arm's funnel and rate, then its flow's comparison (repeated per arm)."""
    return [{"flow_id": flow.flow_id, "variant": arm.variant, **arm_fields(report, arm),
             **comparison_fields(flow)}
            for flow in report.flows for arm in flow.arms.values()]


def arm_fields(report: Report, arm: Arm) -> dict:
    low, high = report.rate_ci(arm)
    return {**arm.funnel(), "conversion_rate": arm.conversion_rate, "rate_ci_low": low,
            "rate_ci_high": high, "revenue": round(arm.revenue, 2),
            "currency": ",".join(sorted(arm.currencies)),
            "revenue_per_enrolled": arm.revenue_per_enrolled,
            "last_touch_conversions": arm.attributed_conversions,
            "last_touch_revenue": round(arm.attributed_revenue, 2)}


def comparison_fields(flow: FlowResult) -> dict:
    c, r, p = flow.conversion, flow.revenue, flow.power
    return {**_with_ci("abs_lift", c and c.diff, c and c.diff_ci),
            **_with_ci("rel_lift", c and c.lift, c and c.lift_ci),
            "p_value": c and c.p_value, "test": c and c.test,
            **_with_ci("revenue_diff", r and r.diff, r and r.diff_ci),
            "revenue_p_value": r and r.p_value,
            "needed_treatment": p and p.needed_t, "needed_control": p and p.needed_c,
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
                   "revenue_per_enrolled": flow.revenue and asdict(flow.revenue),
                   "power": flow.power and asdict(flow.power)}
                  for flow in report.flows],
    }


def write_csv(report: Report, path: str | Path) -> Path:
    path, data = Path(path), rows(report)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(data[0]) if data else ["flow_id", "variant"])
        writer.writeheader()
        writer.writerows(data)
    return path


def write_json(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(orjson.dumps(to_dict(report), option=orjson.OPT_INDENT_2
                                  | orjson.OPT_SERIALIZE_NUMPY))
    return path
