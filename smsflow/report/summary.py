"""The incrementality report as data: each flow's arms plus its treatment-vs-control statistics.

Rendering (table, chart, CSV, JSON) reads only these objects, so every output shows the
same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from smsflow.core.attribution import Windows
from smsflow.report.aggregate import Arm, aggregate
from smsflow.report.stats import (
    ALPHA,
    Interval,
    MeanComparison,
    PowerCheck,
    ProportionComparison,
    compare_means,
    compare_proportions,
    power_check,
    wilson,
)


@dataclass
class FlowResult:
    flow_id: str
    arms: dict[str, Arm]
    conversion: ProportionComparison | None = None  # None unless both arms have customers
    revenue: MeanComparison | None = None
    power: PowerCheck | None = None

    @property
    def treatment(self) -> Arm | None:
        return self.arms.get("treatment")

    @property
    def control(self) -> Arm | None:
        return self.arms.get("control")


@dataclass
class Report:
    flows: list[FlowResult]
    source: str = ""
    records: int = 0
    skipped_lines: int = 0
    windows: Windows = field(default_factory=Windows)
    alpha: float = ALPHA

    def rate_ci(self, arm: Arm) -> Interval:
        """Wilson interval of one arm's conversion rate (also for a flow without holdout)."""
        return wilson(arm.converted, arm.enrolled, self.alpha)


class _Counter:
    """Counts records as they stream into aggregation (the source may be a one-shot reader)."""

    def __init__(self, records: Iterable[Mapping]) -> None:
        self._records, self.count = records, 0

    def __iter__(self):
        for record in self._records:
            self.count += 1
            yield record


def build_report(records: Iterable[Mapping], *, flow_id: str | None = None,
                 windows: Windows = Windows(), alpha: float = ALPHA) -> Report:
    """Aggregate the outcome stream and compare treatment with control in every flow.

    A source from :mod:`smsflow.report.load` also lends its ``description`` and the number
    of lines it ``skipped`` (known only once it has been read)."""
    counted = _Counter(records)
    flows = [compare_flow(flow, arms, alpha) for flow, arms in
             aggregate(counted, windows, flow_id).items()]
    return Report(flows, getattr(records, "description", ""), counted.count,
                  getattr(records, "skipped", 0), windows, alpha)


def compare_flow(flow_id: str, arms: dict[str, Arm], alpha: float = ALPHA) -> FlowResult:
    result = FlowResult(flow_id, arms)
    t, c = result.treatment, result.control
    if t is None or c is None or not t.enrolled or not c.enrolled:
        return result
    counts = (t.converted, t.enrolled, c.converted, c.enrolled)
    result.conversion = compare_proportions(*counts, alpha=alpha)
    result.revenue = compare_means(t.revenue_values(), c.revenue_values(), alpha=alpha)
    result.power = power_check(*counts, alpha=alpha)
    return result
