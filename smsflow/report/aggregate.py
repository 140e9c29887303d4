"""Outcome records -> the funnel of each flow and variant, counted in unique customers.

Customers, not messages, are the unit: holdout assignment is per customer, so the
conversion rate is converted customers over enrolled customers in the same arm, and
revenue per enrolled customer keeps every non-buyer as a zero. Conversions are the goal
credits of :mod:`smsflow.core.attribution`; its last-touch credit is shown beside them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from smsflow.core.attribution import (
    History,
    Windows,
    by_customer,
    credit_enrollments,
    credit_touches,
)

VARIANTS = ("treatment", "control")
STAGES = ("enrolled", "sent", "delivered", "clicked", "converted")
_STAGE_OF_TOUCH = {"sent": "sent", "would_send": "sent", "delivered": "delivered",
                   "clicked": "clicked"}


@dataclass
class Arm:
    """One flow's one variant. ``sent`` counts would_send for control (never texted)."""

    flow_id: str
    variant: str
    customers: dict[str, dict[str, bool]] = field(default_factory=dict)  # id -> stage flags
    revenue_by_customer: dict[str, float] = field(default_factory=dict)
    currencies: set[str] = field(default_factory=set)
    attributed_conversions: int = 0   # last-touch credited to this flow's texts
    attributed_revenue: float = 0.0

    def count(self, stage: str) -> int:
        return sum(1 for flags in self.customers.values() if flags.get(stage))

    @property
    def enrolled(self) -> int:
        return len(self.customers)

    @property
    def converted(self) -> int:
        return self.count("converted")

    @property
    def revenue(self) -> float:
        return sum(self.revenue_by_customer.values())

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.enrolled if self.enrolled else 0.0

    @property
    def revenue_per_enrolled(self) -> float:
        return self.revenue / self.enrolled if self.enrolled else 0.0

    def revenue_values(self) -> list[float]:
        """Revenue of every enrolled customer, zeros included (the Welch test's sample)."""
        return [self.revenue_by_customer.get(c, 0.0) for c in self.customers]

    def funnel(self) -> dict[str, int]:
        return {stage: (self.enrolled if stage == "enrolled" else self.count(stage))
                for stage in STAGES}


def aggregate(records: Iterable[Mapping], windows: Windows = Windows(),
              flow_id: str | None = None) -> dict[str, dict[str, Arm]]:
    """flow id -> variant -> :class:`Arm`, optionally for one flow only."""
    flows: dict[str, dict[str, Arm]] = defaultdict(dict)

    def arm(flow: str, variant: str) -> Arm:
        return flows[flow].setdefault(variant, Arm(flow, variant))

    for customer_id, group in by_customer(records).items():
        if customer_id is None:
            continue
        history = History.from_outcomes(group)
        variant_of = _variant_by_flow(history, flow_id)
        for flow, variant in variant_of.items():
            arm(flow, variant).customers[customer_id] = {"enrolled": True}
        for touch in history.touches:
            if touch.flow_id in variant_of:
                flags = arm(touch.flow_id, variant_of[touch.flow_id]).customers[customer_id]
                flags[_STAGE_OF_TOUCH[touch.kind]] = True
        for credit in credit_enrollments(history, windows):
            flow = credit.enrollment.flow_id
            if flow in variant_of:
                target = arm(flow, variant_of[flow])
                target.customers[customer_id]["converted"] = True
                target.revenue_by_customer[customer_id] = (
                    target.revenue_by_customer.get(customer_id, 0.0) + credit.conversion.revenue)
                if credit.conversion.currency:
                    target.currencies.add(credit.conversion.currency)
        for credit in credit_touches(history, windows):
            flow = credit.touch.flow_id
            if flow in variant_of:
                target = arm(flow, variant_of[flow])
                target.attributed_conversions += 1
                target.attributed_revenue += credit.conversion.revenue
    return {flow: dict(sorted(arms.items(), key=lambda kv: _variant_order(kv[0])))
            for flow, arms in sorted(flows.items())}


def _variant_by_flow(history: History, only_flow: str | None) -> dict[str, str]:
    """The customer's arm in each flow: the variant of their first enrollment in it
    (assignment is a deterministic hash per flow, so later ones agree)."""
    variants: dict[str, str] = {}
    for e in sorted(history.enrollments.values(), key=lambda e: e.time):
        if only_flow in (None, e.flow_id):
            variants.setdefault(e.flow_id, e.variant)
    return variants


def _variant_order(variant: str) -> tuple[int, str]:
    return (VARIANTS.index(variant) if variant in VARIANTS else len(VARIANTS), variant)
