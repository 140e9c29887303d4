"""Outcome records -> the funnel of each flow and variant, counted in unique customers.

Customers, not messages, are the unit: holdout assignment is per customer, so the
conversion rate is converted customers over enrolled customers in the same arm, and
revenue per enrolled customer keeps every non-buyer as a zero. Conversions are the goal
credits of :mod:`smsflow.core.attribution`; its last-touch credit is shown beside them.
Revenue is summed exactly (:mod:`smsflow.report.money`) and per currency, never across.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from smsflow.core.attribution import (
    History,
    Windows,
    by_customer,
    credit_enrollments,
    credit_touches,
)
from smsflow.report import money

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
    # currency -> customer -> exact goal-credited revenue (currencies are never added up)
    revenue_by_customer: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    attributed_conversions: int = 0   # last-touch credited to this flow's texts
    attributed_revenue: dict[str, Decimal] = field(default_factory=dict)  # per currency

    def count(self, stage: str) -> int:
        return sum(1 for flags in self.customers.values() if flags.get(stage))

    @property
    def enrolled(self) -> int:
        return len(self.customers)

    @property
    def converted(self) -> int:
        return self.count("converted")

    @property
    def currencies(self) -> list[str]:
        return sorted(self.revenue_by_customer, key=money.currency_order)

    @property
    def revenue(self) -> dict[str, Decimal]:
        """Goal-credited revenue per currency, exact."""
        return {c: sum(self.revenue_by_customer[c].values(), money.ZERO)
                for c in self.currencies}

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.enrolled if self.enrolled else 0.0

    @property
    def revenue_per_enrolled(self) -> dict[str, Decimal]:
        """Revenue per enrolled customer (buyers or not) in each currency."""
        return {c: total / self.enrolled for c, total in self.revenue.items()}

    def revenue_values(self, currency: str) -> list[float]:
        """Revenue in ``currency`` of every enrolled customer, zeros included (the Welch
        test's sample)."""
        amounts = self.revenue_by_customer.get(currency, {})
        return [float(amounts.get(c, money.ZERO)) for c in self.customers]

    def add_revenue(self, customer_id: str, amount: float, currency: str | None) -> None:
        exact = money.to_decimal(amount) or money.ZERO
        per_customer = self.revenue_by_customer.setdefault(money.currency_code(currency), {})
        per_customer[customer_id] = per_customer.get(customer_id, money.ZERO) + exact

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
                target.add_revenue(customer_id, credit.conversion.revenue,
                                   credit.conversion.currency)
        for credit in credit_touches(history, windows):
            flow = credit.touch.flow_id
            if flow in variant_of:
                target = arm(flow, variant_of[flow])
                target.attributed_conversions += 1
                money.add(target.attributed_revenue,
                          money.currency_code(credit.conversion.currency),
                          money.to_decimal(credit.conversion.revenue) or money.ZERO)
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
