"""The incrementality report as data: each flow's arms plus its treatment-vs-control statistics.

Rendering (table, chart, CSV, JSON) reads only these objects, so every output shows the
same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from smsflow.core.attribution import Windows
from smsflow.report import money
from smsflow.report.accounting import DEFAULT_GRACE, Accounting, build_accounting
from smsflow.report.aggregate import Arm, aggregate
from smsflow.report.lasting import (
    HORIZONS,
    MIN_HOLDOUT_DAYS,
    TARGET_LIFT,
    Lasting,
    build_lasting,
)
from smsflow.report.records import Deduplicated
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
    revenue: dict[str, MeanComparison | None] = field(default_factory=dict)  # per currency
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
    duplicates: int = 0                  # records dropped as repeats of an outcome_id
    invalid: int = 0                     # records not shaped like an outcome, left out
    lasting: Lasting | None = None       # repeat purchase and revenue at 30/60/90 days
    accounting: Accounting | None = None  # enrollments and sends: ended, pending, flagged

    def rate_ci(self, arm: Arm) -> Interval:
        """Wilson interval of one arm's conversion rate (also for a flow without holdout)."""
        return wilson(arm.converted, arm.enrolled, self.alpha)


def build_report(records: Iterable[Mapping], *, flow_id: str | None = None,
                 windows: Windows = Windows(), alpha: float = ALPHA,
                 as_of: float | None = None, horizons: Iterable[int] = HORIZONS,
                 target_lift: float = TARGET_LIFT, min_holdout_days: float = MIN_HOLDOUT_DAYS,
                 grace: float = DEFAULT_GRACE) -> Report:
    """Aggregate the outcome stream and compare treatment with control in every flow; then
    the lasting effect (repeat purchase, revenue at ``horizons`` days, CUPED) and the
    accounting of enrollments and sends.

    Records repeated with the same ``outcome_id`` (an at-least-once rewrite) count once.
    ``as_of`` is "now" for windows and due times: the latest time in the data unless given.
    A source from :mod:`smsflow.report.load` also lends its ``description`` and the number
    of lines it ``skipped`` (known only once it has been read)."""
    unique = Deduplicated(records)
    data = list(unique)
    flows = [compare_flow(flow, arms, alpha) for flow, arms in
             aggregate(data, windows, flow_id).items()]
    report = Report(flows, getattr(records, "description", ""), unique.count,
                    getattr(records, "skipped", 0), windows, alpha, unique.duplicates,
                    unique.invalid)
    report.lasting = build_lasting(data, as_of=as_of, horizons=horizons, flow_id=flow_id,
                                   alpha=alpha, target_lift=target_lift,
                                   min_holdout_days=min_holdout_days)
    report.accounting = build_accounting(data, as_of=as_of, grace=grace, flow_id=flow_id)
    return report


def compare_flow(flow_id: str, arms: dict[str, Arm], alpha: float = ALPHA) -> FlowResult:
    result = FlowResult(flow_id, arms)
    t, c = result.treatment, result.control
    if t is None or c is None or not t.enrolled or not c.enrolled:
        return result
    counts = (t.converted, t.enrolled, c.converted, c.enrolled)
    result.conversion = compare_proportions(*counts, alpha=alpha)
    for currency in sorted(set(t.currencies) | set(c.currencies), key=money.currency_order):
        result.revenue[currency] = compare_means(t.revenue_values(currency),
                                                 c.revenue_values(currency), alpha=alpha)
    result.power = power_check(*counts, alpha=alpha)
    return result
