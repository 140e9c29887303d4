"""The report as a PNG: per flow, the funnel of each variant and the lift with its interval.

Uses matplotlib's Agg backend (no display needed: the report runs on servers and in CI).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from smsflow.report.aggregate import STAGES  # noqa: E402
from smsflow.report.summary import FlowResult, Report  # noqa: E402

COLORS = {"treatment": "#1f77b4", "control": "#ff7f0e"}


def write_chart(report: Report, path: str | Path) -> Path:
    """Draw every flow of ``report`` into one PNG at ``path``; returns the path."""
    path = Path(path)
    rows = max(1, len(report.flows))
    fig, axes = plt.subplots(rows, 2, figsize=(13, 4 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    try:
        if not report.flows:
            axes[0][0].text(0.5, 0.5, "no enrollments in the outcomes", ha="center")
        for flow, (funnel_ax, lift_ax) in zip(report.flows, axes):
            _funnel(funnel_ax, flow)
            _lift(lift_ax, flow, report)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path


def _funnel(ax, flow: FlowResult) -> None:
    width = 0.8 / max(1, len(flow.arms))
    for i, arm in enumerate(flow.arms.values()):
        funnel = arm.funnel()
        xs = [s + i * width for s in range(len(STAGES))]
        shares = [100 * funnel[s] / arm.enrolled if arm.enrolled else 0 for s in STAGES]
        bars = ax.bar(xs, shares, width, label=f"{arm.variant} (n={arm.enrolled:,})",
                      color=COLORS.get(arm.variant))
        ax.bar_label(bars, labels=[f"{funnel[s]:,}" for s in STAGES], fontsize=7)
    ax.set_xticks([s + 0.4 - width / 2 for s in range(len(STAGES))], STAGES)
    ax.set_ylabel("% of enrolled customers")
    ax.set_title(f"{flow.flow_id}: funnel")
    ax.legend(fontsize=8)


def _lift(ax, flow: FlowResult, report: Report) -> None:
    level = f"{1 - report.alpha:.0%}"
    rows = []  # (label, value, low, high) in percentage points
    for arm in flow.arms.values():
        low, high = report.rate_ci(arm)
        rows.append((f"{arm.variant} rate", arm.conversion_rate, low, high))
    c = flow.conversion
    if c is not None:
        rows.append(("absolute lift", c.diff, *c.diff_ci))
    for y, (label, value, low, high) in enumerate(rows):
        color = COLORS.get(label.split()[0], "#2ca02c")
        ax.errorbar([value * 100], [y], xerr=[[(value - low) * 100], [(high - value) * 100]],
                    fmt="o", capsize=5, color=color)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"percent / percentage points, {level} CI")
    if c is None:
        ax.set_title("no holdout comparison")
    else:
        lift = "n/a" if c.lift is None else f"{c.lift:+.0%}"
        lift_ci = "" if c.lift_ci is None else f" [{c.lift_ci[0]:+.0%}, {c.lift_ci[1]:+.0%}]"
        ax.set_title(f"relative lift {lift}{lift_ci}, p = {c.p_value:.3g}"
                     + (" — underpowered" if flow.power and flow.power.underpowered else ""))
