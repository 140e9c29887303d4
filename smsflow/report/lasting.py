"""What lasts: repeat purchase and revenue per enrolled customer 30/60/90 days after enrollment.

Read from the outcomes topic alone: ``enrolled`` records say who entered which flow, in
which arm and when (their ``event_time``), and ``ordered`` records (one per distinct order
of a customer) say what each customer bought afterwards. Rules, stated in the output too:

* The unit is the customer: a customer enrolled several times in one flow counts once per
  arm, from their **first** enrollment in that arm.
* A repeat purchase at N days is at least one order in (enrollment, enrollment + N days].
  Only customers whose N-day window has closed by the report's "as of" time count at N
  (the latest time in the data unless given), and how many that is is shown: an open
  window is not a customer who did not buy.
* Revenue per enrolled customer at N days is the sum of those orders' revenue in each
  currency, divided by every closed-window customer of the arm; amounts are summed as
  :class:`~decimal.Decimal` and never added across currencies.
* CUPED uses the customer's history before enrolling: pre-enrollment spend in the same
  currency for revenue, pre-enrollment order count for the repeat rate (a count mixes no
  currencies). Both come from the enrolled record's details when the runtime wrote them,
  else from the customer's ``ordered`` outcomes before the enrollment.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from smsflow.report import money
from smsflow.report.cuped import CupedComparison, cuped, mde_proportion, mean_interval
from smsflow.report.records import details, event_time, horizon, text
from smsflow.report.stats import ALPHA, POWER, Interval, required_sample_size, wilson

DAY = 86400.0
HORIZONS = (30, 60, 90)
MIN_HOLDOUT_DAYS = 14.0
TARGET_LIFT = 0.10   # relative lift in the shortest-horizon repeat rate a holdout should detect
VARIANTS = ("treatment", "control")
ENROLLED_RECORD, ORDERED_OUTCOMES = "enrolled record", "ordered outcomes"


@dataclass(frozen=True)
class Order:
    key: str
    time: float
    amount: Decimal | None   # None: the order carried no revenue (counts for repeat only)
    currency: str


@dataclass
class Member:
    """A customer's first enrollment in one flow and arm, with their pre-period history."""

    customer_id: str
    variant: str
    enrollment_id: str | None
    time: float
    enrollments: int = 1
    pre_orders: int | None = None               # None until known
    pre_spend: dict[str, Decimal] | None = None  # None until known
    covariate_source: str = ORDERED_OUTCOMES


@dataclass(frozen=True)
class Revenue:
    """One arm's revenue in one currency at one horizon."""

    currency: str
    total: Decimal            # exact sum of the orders' revenue
    per_customer: Decimal     # total / closed-window customers of the arm
    ci: Interval | None       # t interval of the per-customer mean


@dataclass
class ArmHorizon:
    variant: str
    days: int
    enrolled: int             # customers in the arm (first enrollments)
    closed: int               # ... whose N-day window has closed: the denominator
    repeaters: int
    revenue: dict[str, Revenue] = field(default_factory=dict)
    alpha: float = ALPHA

    @property
    def rate(self) -> float | None:
        return self.repeaters / self.closed if self.closed else None

    @property
    def rate_ci(self) -> Interval | None:
        return wilson(self.repeaters, self.closed, self.alpha) if self.closed else None


@dataclass
class HorizonResult:
    days: int
    arms: dict[str, ArmHorizon]
    repeat: CupedComparison | None = None                 # None unless 2+ closed per arm
    revenue: dict[str, CupedComparison | None] = field(default_factory=dict)
    first_close: float | None = None                      # when the first window closes


@dataclass(frozen=True)
class PowerNote:
    """What the shortest horizon's repeat rate can detect with the customers it has."""

    days: int
    n_t: int
    n_c: int
    control_rate: float | None
    mde: float | None            # absolute, at POWER and ALPHA
    mde_relative: float | None
    mde_cuped: float | None      # the same, with the variance CUPED removed
    target_lift: float
    needed_t: int | None         # customers per arm for target_lift at the current allocation
    needed_c: int | None
    underpowered: bool


@dataclass
class LastingFlow:
    flow_id: str
    enrolled: dict[str, int]
    horizons: list[HorizonResult]
    first_enrollment: float | None
    first_control: float | None
    holdout_days: float | None
    power: PowerNote | None = None
    multi_enrolled: int = 0          # customers with more than one enrollment in an arm
    both_arms: int = 0               # customers found in both arms
    covariate_sources: dict[str, int] = field(default_factory=dict)
    unpriced_orders: int = 0         # orders in a closed window without revenue
    notes: list[str] = field(default_factory=list)


@dataclass
class Lasting:
    as_of: float | None
    as_of_source: str                # "given" or "latest record"
    horizons: tuple[int, ...]
    flows: list[LastingFlow]
    orders: int                      # distinct orders in the data
    alpha: float = ALPHA
    power: float = POWER
    target_lift: float = TARGET_LIFT
    min_holdout_days: float = MIN_HOLDOUT_DAYS
    notes: list[str] = field(default_factory=list)


def build_lasting(records: Sequence[Mapping], *, as_of: float | None = None,
                  horizons: Iterable[int] = HORIZONS, flow_id: str | None = None,
                  alpha: float = ALPHA, power: float = POWER,
                  target_lift: float = TARGET_LIFT,
                  min_holdout_days: float = MIN_HOLDOUT_DAYS) -> Lasting:
    """The lasting-effect section for every flow with enrollments (or ``flow_id`` only)."""
    days = tuple(sorted({int(d) for d in horizons if int(d) > 0}))
    if not days:
        raise ValueError("need at least one positive horizon in days")
    source = "given" if as_of is not None else "latest record"
    as_of = as_of if as_of is not None else horizon(records)
    orders = _orders(records)
    members = _members(records, flow_id)
    result = Lasting(as_of, source, days, [], sum(len(o) for o in orders.values()), alpha,
                     power, target_lift, min_holdout_days)
    if not result.orders:
        result.notes.append("no `ordered` outcomes in the data, so repeat purchase and later "
                            "revenue cannot be measured (the runtime writes one per order)")
    times = {cid: [o.time for o in customer_orders]
             for cid, customer_orders in orders.items()}
    for flow in sorted(members):
        arms = members[flow]
        for member in (m for arm in arms.values() for m in arm.values()):
            _covariates(member, orders.get(member.customer_id, []),
                        times.get(member.customer_id, []))
        result.flows.append(_flow(flow, arms, orders, times, result))
    return result


# -- reading the records --------------------------------------------------------------------

def _orders(records: Iterable[Mapping]) -> dict[str, list[Order]]:
    """customer -> distinct orders sorted by time (one order written twice counts once)."""
    seen: dict[str, dict[str, Order]] = defaultdict(dict)
    for r in records:
        if r.get("type") != "ordered":
            continue
        cid, t = text(r, "customer_id"), event_time(r)
        if cid is None or t is None:
            continue
        extra = details(r)
        key = (str(extra["order_id"]) if extra.get("order_id") not in (None, "")
               else text(r, "outcome_id") or f"{r.get('event_time')}|{r.get('revenue')}")
        seen[cid].setdefault(key, Order(key, t, money.to_decimal(r.get("revenue")),
                                        money.currency_code(r.get("currency"))))
    return {cid: sorted(found.values(), key=lambda o: (o.time, o.key))
            for cid, found in seen.items()}


def _members(records: Iterable[Mapping], only_flow: str | None
             ) -> dict[str, dict[str, dict[str, Member]]]:
    """flow -> variant -> customer -> first enrollment (with the pre-period history its
    enrolled record carried, if any)."""
    members: dict[str, dict[str, dict[str, Member]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("type") != "enrolled":
            continue
        flow, cid, variant, t = (text(r, "flow_id"), text(r, "customer_id"),
                                 r.get("variant"), event_time(r))
        if flow is None or cid is None or variant not in VARIANTS or t is None:
            continue
        if only_flow not in (None, flow):
            continue
        arm = members[flow][variant]
        known = arm.get(cid)
        if known is not None and known.time <= t:
            known.enrollments += 1
            continue
        member = Member(cid, variant, text(r, "enrollment_id"), t,
                        (known.enrollments + 1) if known else 1)
        extra = details(r)
        member.pre_spend = money.spend_by_currency(extra.get("pre_enrollment_spend"))
        count = extra.get("pre_enrollment_orders")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            member.pre_orders = count
        arm[cid] = member
    return members


def _covariates(member: Member, orders: list[Order], times: list[float]) -> None:
    """Fill what the enrolled record did not carry from the orders before enrolling."""
    before = orders[:bisect_left(times, member.time)]
    if member.pre_spend is None:
        member.covariate_source = ORDERED_OUTCOMES
        member.pre_spend = {}
        for order in before:
            if order.amount is not None:
                money.add(member.pre_spend, order.currency, order.amount)
    else:
        member.covariate_source = ENROLLED_RECORD
    if member.pre_orders is None:
        member.pre_orders = len(before)


# -- one flow -------------------------------------------------------------------------------

def _flow(flow_id: str, arms: Mapping[str, Mapping[str, Member]],
          orders: Mapping[str, list[Order]], times: Mapping[str, list[float]],
          report: Lasting) -> LastingFlow:
    everyone = [m for arm in arms.values() for m in arm.values()]
    controls = list(arms.get("control", {}).values())
    first = min((m.time for m in everyone), default=None)
    first_control = min((m.time for m in controls), default=None)
    as_of = report.as_of
    holdout_days = (None if first_control is None or as_of is None
                    else max(0.0, (as_of - first_control) / DAY))
    result = LastingFlow(flow_id, {v: len(arms.get(v, {})) for v in VARIANTS if v in arms},
                         [], first, first_control, holdout_days)
    result.multi_enrolled = sum(1 for m in everyone if m.enrollments > 1)
    ids = [set(arms.get(v, {})) for v in VARIANTS]
    result.both_arms = len(ids[0] & ids[1])
    result.covariate_sources = dict(Counter(m.covariate_source for m in everyone))
    unpriced: set[str] = set()
    for n in report.horizons:
        result.horizons.append(_horizon(n, arms, orders, times, as_of, report.alpha, unpriced))
    result.unpriced_orders = len(unpriced)
    result.power = _power(result.horizons[0], report) if result.horizons else None
    result.notes = _notes(result, report)
    return result


def _horizon(days: int, arms: Mapping[str, Mapping[str, Member]],
             orders: Mapping[str, list[Order]], times: Mapping[str, list[float]],
             as_of: float | None, alpha: float, unpriced: set[str]) -> HorizonResult:
    span = days * DAY
    values: dict[str, dict] = {}
    arm_results: dict[str, ArmHorizon] = {}
    currencies: set[str] = set()
    for variant in VARIANTS:
        if variant not in arms:
            continue
        members = sorted(arms[variant].values(), key=lambda m: (m.time, m.customer_id))
        closed = [m for m in members if as_of is not None and m.time + span <= as_of]
        repeat, spend, covariate_orders = [], [], []
        for m in closed:
            customer_orders = orders.get(m.customer_id, [])
            ts = times.get(m.customer_id, [])
            window = customer_orders[bisect_right(ts, m.time):bisect_right(ts, m.time + span)]
            repeat.append(1.0 if window else 0.0)
            amounts: dict[str, Decimal] = {}
            for order in window:
                if order.amount is None:
                    unpriced.add(f"{m.customer_id}|{order.key}")
                else:
                    money.add(amounts, order.currency, order.amount)
            spend.append(amounts)
            covariate_orders.append(float(m.pre_orders or 0))
            currencies.update(amounts)
        values[variant] = {"members": closed, "repeat": repeat, "spend": spend,
                           "x_orders": covariate_orders}
        arm_results[variant] = ArmHorizon(variant, days, len(members), len(closed),
                                          int(sum(repeat)), alpha=alpha)
    for variant, v in values.items():
        for currency in sorted(currencies, key=money.currency_order):
            amounts = [s.get(currency, money.ZERO) for s in v["spend"]]
            total = sum(amounts, money.ZERO)
            n = len(amounts)
            arm_results[variant].revenue[currency] = Revenue(
                currency, total, total / n if n else money.ZERO,
                mean_interval([float(a) for a in amounts], alpha))
    result = HorizonResult(days, arm_results)
    starts = [m.time for arm in arms.values() for m in arm.values()]
    result.first_close = min(starts) + span if starts else None
    t, c = values.get("treatment"), values.get("control")
    if t and c and len(t["members"]) >= 2 and len(c["members"]) >= 2:
        result.repeat = cuped(t["repeat"], t["x_orders"], c["repeat"], c["x_orders"], alpha)
        for currency in sorted(currencies, key=money.currency_order):
            y_t, x_t = _revenue_values(t, currency)
            y_c, x_c = _revenue_values(c, currency)
            result.revenue[currency] = cuped(y_t, x_t, y_c, x_c, alpha)
    return result


def _revenue_values(arm: Mapping, currency: str) -> tuple[list[float], list[float]]:
    y = [float(s.get(currency, money.ZERO)) for s in arm["spend"]]
    x = [float((m.pre_spend or {}).get(currency, money.ZERO)) for m in arm["members"]]
    return y, x


def _power(first: HorizonResult, report: Lasting) -> PowerNote | None:
    t, c = first.arms.get("treatment"), first.arms.get("control")
    if t is None or c is None:
        return None
    n_t, n_c = t.closed, c.closed
    p_c = c.rate
    mde = None if p_c is None else mde_proportion(n_t, n_c, p_c, report.alpha, report.power)
    relative = mde / p_c if mde is not None and p_c else None
    reduction = first.repeat.variance_reduction if first.repeat else 0.0
    mde_cuped = None if mde is None else mde * math.sqrt(max(0.0, 1.0 - reduction))
    needed = None
    if p_c and n_t and n_c and p_c * (1 + report.target_lift) < 1:
        needed = required_sample_size(p_c * (1 + report.target_lift), p_c, n_c / n_t,
                                      report.alpha, report.power)
    needed_t, needed_c = needed or (None, None)
    # Relative to the control rate: a control rate of 0 leaves every relative lift undefined.
    underpowered = relative is None or relative > report.target_lift
    return PowerNote(first.days, n_t, n_c, p_c, mde, relative, mde_cuped, report.target_lift,
                     needed_t, needed_c, underpowered)


def _notes(flow: LastingFlow, report: Lasting) -> list[str]:
    notes: list[str] = []
    if "control" not in flow.enrolled:
        notes.append("no control customers: this flow has no holdout to compare with")
    elif flow.holdout_days is not None and flow.holdout_days < report.min_holdout_days:
        notes.append(f"the holdout has run {flow.holdout_days:.1f} days since its first "
                     f"control enrollment: keep it at least {report.min_holdout_days:g} days "
                     "(two weekly cycles) before acting on it")
    p = flow.power
    if p is not None and p.underpowered:
        notes.append(_power_sentence(p, report))
    if flow.multi_enrolled:
        notes.append(f"{flow.multi_enrolled:,} customers enrolled more than once; each counts "
                     "once per arm, from their first enrollment")
    if flow.both_arms:
        notes.append(f"{flow.both_arms:,} customers are in both arms (was the holdout "
                     "changed?); each counts in both")
    if flow.unpriced_orders:
        notes.append(f"{flow.unpriced_orders:,} orders without revenue count for repeat "
                     "purchase only")
    derived = flow.covariate_sources.get(ORDERED_OUTCOMES, 0)
    if derived:
        notes.append(f"pre-enrollment spend of {derived:,} customers comes from their earlier "
                     "`ordered` outcomes, only as far back as the data goes (the enrolled "
                     "record carried none)")
    return notes


def _power_sentence(p: PowerNote, report: Lasting) -> str:
    level = f"{report.power:.0%} power, alpha {report.alpha:g}"
    if p.n_t == 0 or p.n_c == 0:
        return (f"too few customers to read a lift yet: no {'control' if p.n_c == 0 else 'treatment'} "
                f"customer's {p.days}-day window has closed")
    if p.mde is None:
        return (f"too few controls: {p.n_t:,} treatment / {p.n_c:,} control customers with a "
                f"closed {p.days}-day window cannot detect any lift at {level}")
    rel = f" ({p.mde_relative:+.0%} relative)" if p.mde_relative is not None else ""
    cuped_part = (f", about {p.mde_cuped * 100:+.1f} pp with CUPED"
                  if p.mde_cuped is not None and p.mde_cuped < 0.99 * p.mde else "")
    text_ = (f"too few controls for its minimum detectable effect: with {p.n_t:,} treatment / "
             f"{p.n_c:,} control customers whose {p.days}-day window has closed, the "
             f"{p.days}-day repeat rate detects (at {level}) a lift of {p.mde * 100:+.1f} pp"
             f"{rel}{cuped_part}")
    if p.needed_c is not None:
        text_ += (f"; a {p.target_lift:.0%} relative lift needs about {p.needed_t:,} treatment "
                  f"and {p.needed_c:,} control customers at this allocation")
    return text_
