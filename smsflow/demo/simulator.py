"""A closed-loop D2C customer simulator: a day of shop events that reacts to the texts it gets.

Pure and deterministic per seed (no Kafka, no clock): the demo replays :meth:`Simulator.events`
against a compressed clock and calls :meth:`Simulator.on_text` whenever the sandbox records a
text, publishing what comes back. The behaviour has a known answer, so the incrementality
report can be checked against it:

* every checkout starter draws ``u`` once. ``u < base_rate``: buys on their own at a
  scheduled time, texted or not (some within minutes, so they exit before any text).
  ``base_rate <= u < base_rate + uplift``: persuadable, buys only if texted, after the text.
* hence P(order | control) = base_rate and P(order | treatment) = base_rate + uplift x the
  share of persuadable treatment customers the pipeline actually texted (1.0 when none is
  held back by consent, quiet hours or caps; the demo's window is chosen for that).

:class:`RepeatPurchaseSimulator` answers the longer question — did the texts make customers
come back? — for a population enrolled over months, with purchase histories before and after
enrolling, a configured true uplift in the 30-day repeat-purchase rate, and closed-form
repeat rates and revenue at any horizon (see its docstring).

Phones are in the fictional 555-01xx range of area codes without stricter state rules; a
few non-checkout customers get unparseable phones, and ``malformed_rate`` of extra events
are broken (raw non-JSON bytes, no userId, unknown type) for the pipeline to reject.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import orjson

from smsflow.clock import iso as clock_iso
from smsflow.core.events import parse_time

MINUTE, HOUR = 60.0, 3600.0
# 16:00 UTC: 08:00 in Los Angeles, 11:00 in New York; the next 8 hours are daytime in all.
DEFAULT_START = "2026-11-28T16:00:00Z"
# Area codes of states without a stricter rule in the built-in state table (no WA, NV, MN,
# LA, MA, PA, MI, ...): with PA's Saturday-morning-only window, for one, a Saturday demo
# deferred some cart texts to Monday and the measured lift fell short of the true one.
TIMEZONES = {
    "America/Los_Angeles": "415 510 408 213 310 619 916 707 714 559 805 503",
    "America/Phoenix": "602 480 520",
    "America/Denver": "303 720 719 801 385",
    "America/Chicago": "312 773 847 913 402 314 816 414 608 615",
    "America/New_York": "404 678 212 718 917 646 603 207 803 804 614 216 330 704 919 703 202",
}
AREA_CODES = {code: tz for tz, codes in TIMEZONES.items() for code in codes.split()}
BAD_PHONES = ("555-01", "(415) 555-01", "12345", "call me", "+1 (000) 000-0000", "0000000000000000")
PRODUCTS = (
    ("sku_moist", "Daily Moisturizer", 42.0, "skincare"),
    ("sku_serum", "Vitamin C Serum", 58.0, "skincare"),
    ("sku_clean", "Gentle Cleanser", 24.0, "skincare"),
    ("sku_spf", "Mineral SPF 50", 32.0, "suncare"),
    ("sku_beans", "Single-Origin Coffee Beans", 19.0, "coffee"),
    ("sku_grind", "Burr Grinder", 129.0, "coffee"),
    ("sku_mug", "Ceramic Travel Mug", 28.0, "accessories"),
    ("sku_tote", "Canvas Tote", 35.0, "accessories"),
)
FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dev", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas",
               "Kiri", "Liam", "Maya", "Noor", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq")
CONSENT_TEXT = "Yes, text me offers. Msg & data rates may apply. Reply STOP to opt out."
STOP_REPLIES = ("STOP", "STOP", "stop", "Stop texting me", "UNSUBSCRIBE")
HELP_REPLIES = ("HELP", "help", "INFO")
URL = re.compile(r"https?://\S+")


def iso(t: float) -> str:
    return clock_iso(t, "milliseconds")


def epoch(t: float | str | datetime) -> float:
    if isinstance(t, datetime):
        return t.timestamp()
    return parse_time(t, 0.0) if isinstance(t, str) else float(t)


def item_time(item: dict) -> float:
    """Simulated epoch time of any item the simulator returns (event, raw, inbound, click)."""
    return epoch(item["timestamp"])


def encode_event(item: dict) -> tuple[str | None, bytes]:
    """(key, value) for the events topic: raw items keep their broken bytes as they are."""
    if item.get("kind") == "raw":
        return item.get("key"), item["value"]
    return item.get("userId"), orjson.dumps(item)


@dataclass
class Customer:
    id: str
    rng: random.Random
    segment: str                      # browse | cart | checkout
    phone: str                        # as the shop typed it
    e164: str | None                  # None when the phone is bad
    timezone: str
    u: float                          # the one draw deciding conversion (checkout starters)
    checkout: dict | None = None
    checkout_at: float | None = None
    ordered_at: float | None = None
    texts: int = 0
    opted_out: bool = False
    events: list[dict] = field(default_factory=list)


class Simulator:
    """``n_customers`` shoppers over one simulated day starting at ``start_time``."""

    def __init__(self, n_customers: int, seed: int = 0,
                 start_time: float | str | datetime = DEFAULT_START, *, uplift: float = 0.06,
                 base_rate: float = 0.10, checkout_share: float = 0.45,
                 bad_phone_rate: float = 0.04, malformed_rate: float = 0.02,
                 stop_rate: float = 0.03, help_rate: float = 0.01, click_rate: float = 0.25,
                 active_hours: float = 8.0) -> None:
        if not 0 <= base_rate <= base_rate + uplift <= 1:
            raise ValueError("need 0 <= base_rate <= base_rate + uplift <= 1")
        self.seed, self.start = seed, epoch(start_time)
        self.base_rate, self.uplift = base_rate, uplift
        self.checkout_share, self.bad_phone_rate = checkout_share, bad_phone_rate
        self.stop_rate, self.help_rate, self.click_rate = stop_rate, help_rate, click_rate
        self.active_hours = active_hours
        phones = self._phone_pool()
        self.customers: dict[str, Customer] = {}
        for i in range(n_customers):
            customer = self._customer(f"c_{i + 1:05d}", phones[i % len(phones)])
            self.customers[customer.id] = customer
        self._malformed = self._malformed_events(malformed_rate)

    #: flows whose texts can persuade a persuadable checkout starter to buy
    persuading_flows: frozenset[str] = frozenset({"abandoned_checkout"})

    # -- the known answer ---------------------------------------------------------------
    @property
    def true_uplift(self) -> float:
        """Absolute conversion uplift of a texted checkout starter (e.g. 0.10 -> 0.16)."""
        return self.uplift

    def expected_conversion_rates(self, texted_share: float = 1.0) -> dict[str, float]:
        """Conversion per enrolled checkout starter in each arm, given the share of
        persuadable treatment customers that were really texted."""
        return {"control": self.base_rate,
                "treatment": self.base_rate + self.uplift * texted_share}

    def is_persuadable(self, customer_id: str) -> bool:
        """True for a checkout starter who buys only if texted about the cart."""
        c = self.customers.get(customer_id)
        return c is not None and self._persuadable(c)

    def summary(self) -> dict[str, int]:
        """Counts the demo can check the pipeline against (rejections, enrollments)."""
        people = self.customers.values()
        return {"customers": len(people), "events": len(self.events()),
                "malformed_events": len(self._malformed),
                "bad_phones": sum(c.e164 is None for c in people),
                **Counter(f"{c.segment}_customers" for c in people)}

    # -- the day ------------------------------------------------------------------------
    def events(self) -> list[dict]:
        """Every event of the day (valid and malformed), ordered by ``timestamp``."""
        items = [e for c in self.customers.values() for e in c.events] + self._malformed
        return sorted(items, key=lambda e: (item_time(e), e.get("messageId", "")))

    def on_text(self, customer_id: str, body: str, t: float | str | datetime, *,
                flow_id: str | None = None) -> list[dict]:
        """React to a text received at simulated time ``t``: maybe a click, an order (if
        persuadable, not yet ordered and the text is about the cart), a STOP or HELP reply.
        Items are sorted by time.

        ``flow_id`` names the flow that sent the text, when known: only texts of
        :attr:`persuading_flows` persuade (a shipping update about an older order does not
        make anyone buy their cart; without this a control customer of the cart flow who
        gets a shipping text would convert, and P(order | control) would exceed
        ``base_rate``). ``None`` treats every text as a cart text."""
        c = self.customers.get(customer_id)
        if c is None or c.e164 is None:
            return []
        t, rng, c.texts = epoch(t), c.rng, c.texts + 1
        click_draw, reply_draw = rng.random(), rng.random()
        click_delay, order_delay, reply_delay = (rng.uniform(1, 30) * MINUTE,
                                                 rng.uniform(35, 180) * MINUTE,
                                                 rng.uniform(0.5, 20) * MINUTE)
        out: list[dict] = []
        link = URL.search(body or "")
        about_cart = flow_id is None or flow_id in self.persuading_flows
        persuaded = (about_cart and self._persuadable(c) and c.ordered_at is None
                     and t >= c.checkout_at)
        if link and (persuaded or click_draw < self.click_rate):
            out.append({"kind": "click", "customer_id": c.id, "url": link.group(0),
                        "timestamp": iso(t + click_delay)})
        if persuaded:
            out.append(self._order(c, t + order_delay))
        if not c.opted_out and reply_draw < self.stop_rate + self.help_rate:
            words = STOP_REPLIES if reply_draw < self.stop_rate else HELP_REPLIES
            c.opted_out = words is STOP_REPLIES
            out.append({"kind": "inbound", "customer_id": c.id, "from_phone": c.e164,
                        "body": rng.choice(words), "timestamp": iso(t + reply_delay)})
        return sorted(out, key=item_time)

    # -- building customers -------------------------------------------------------------
    def _phone_pool(self) -> list[tuple[str, str, str]]:
        """(as typed, E.164, time zone), shuffled per seed; beyond 4,700 customers phones are
        shared, as in a household."""
        pool = [(f"({code}) 555-01{n:02d}", f"+1{code}55501{n:02d}", tz)
                for code, tz in AREA_CODES.items() for n in range(100)]
        random.Random(f"{self.seed}:phones").shuffle(pool)
        return pool

    def _persuadable(self, c: Customer) -> bool:
        return c.segment == "checkout" and self.base_rate <= c.u < self.base_rate + self.uplift

    def _customer(self, cid: str, pooled: tuple[str, str, str]) -> Customer:
        rng = random.Random(f"{self.seed}:{cid}")
        draw = rng.random()
        segment = ("checkout" if draw < self.checkout_share else
                   "cart" if draw < self.checkout_share + (1 - self.checkout_share) * 0.4
                   else "browse")
        phone, e164, tz = pooled
        bad = segment != "checkout" and rng.random() < self.bad_phone_rate
        c = Customer(cid, rng, segment, rng.choice(BAD_PHONES) if bad else phone,
                     None if bad else e164, tz, rng.random())
        latest_start = self.active_hours * (0.75 if segment == "checkout" else 1.0)
        t = self.start + rng.uniform(0.25, latest_start) * HOUR
        c.events.append(self._identify(c, t - rng.uniform(1, 10) * MINUTE))
        t = self._browse(c, t)
        if segment != "browse":
            items, t = self._cart(c, t)
            if segment == "checkout":
                self._start_checkout(c, t + rng.uniform(1, 10) * MINUTE, items)
        self._post_purchase(c)
        self._identify_first(c)
        return c

    @staticmethod
    def _identify_first(c: Customer) -> None:
        """A customer whose earlier order ships today is known to the shop already: their
        identify (phone, consent) must precede every event of theirs, or a shipping update
        timed before today's browsing would find no phone."""
        identify = c.events[0]
        first = min(item_time(e) for e in c.events[1:]) if len(c.events) > 1 else None
        if first is not None and first <= item_time(identify):
            t = iso(first - 5 * MINUTE)
            identify["timestamp"] = t
            consent = identify["traits"].get("sms_consent")
            if consent:
                consent["timestamp"] = t

    def _track(self, c: Customer, name: str, t: float, properties: dict) -> dict:
        return {"type": "track", "messageId": self._message_id(c.rng), "userId": c.id,
                "event": name, "timestamp": iso(t), "properties": properties}

    @staticmethod
    def _message_id(rng: random.Random) -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def _identify(self, c: Customer, t: float) -> dict:
        rng = c.rng
        traits = {"first_name": rng.choice(FIRST_NAMES), "email": f"{c.id}@example.com",
                  "phone": c.phone, "country": "US", "timezone": c.timezone}
        if c.segment == "checkout" or rng.random() < 0.75:
            traits["sms_consent"] = {"status": "subscribed",
                                     "source": "checkout" if c.segment == "checkout" else "popup",
                                     "timestamp": iso(t), "text": CONSENT_TEXT}
        return {"type": "identify", "messageId": self._message_id(rng), "userId": c.id,
                "timestamp": iso(t), "traits": traits}

    def _browse(self, c: Customer, t: float) -> float:
        for _ in range(c.rng.randint(1, 4)):
            sku, name, price, category = c.rng.choice(PRODUCTS)
            c.events.append(self._track(c, "Product Viewed", t, {
                "product_id": sku, "name": name, "price": price, "category": category}))
            t += c.rng.uniform(0.5, 5) * MINUTE
        if c.segment == "browse" and c.rng.random() < 0.05:
            sku, name, _, _ = c.rng.choice(PRODUCTS)
            c.events.append(self._track(c, "Back In Stock Requested", t,
                                        {"product_id": sku, "name": name}))
        return t

    def _cart(self, c: Customer, t: float) -> tuple[list[dict], float]:
        items = [self._line(c.rng, p) for p in c.rng.sample(PRODUCTS, c.rng.randint(1, 3))]
        for item in items:
            c.events.append(self._track(c, "Added to Cart", t, {**item, "currency": "USD"}))
            t += c.rng.uniform(0.2, 3) * MINUTE
        return items, t

    @staticmethod
    def _line(rng: random.Random, product: tuple) -> dict:
        sku, name, price, category = product
        return {"product_id": sku, "name": name, "price": price,
                "quantity": rng.choice((1, 1, 1, 2)), "category": category}

    def _start_checkout(self, c: Customer, t: float, items: list[dict]) -> None:
        checkout_id = f"ch_{c.id}_1"
        c.checkout = {"checkout_id": checkout_id,
                      "checkout_url": f"https://shop.example/checkout/{checkout_id}",
                      "value": round(sum(i["price"] * i["quantity"] for i in items), 2),
                      "currency": "USD", "products": items}
        c.checkout_at = t
        c.events.append(self._track(c, "Checkout Started", t, dict(c.checkout)))
        if c.u < self.base_rate:  # buys on their own: a third at once, the rest hours later
            quick = c.rng.random() < 1 / 3
            delay = c.rng.uniform(3, 25) * MINUTE if quick else c.rng.uniform(1.5, 10) * HOUR
            c.events.append(self._order(c, t + delay))

    def _order(self, c: Customer, t: float) -> dict:
        c.ordered_at = t
        value = c.checkout["value"]
        return self._track(c, "Order Placed", t, {
            "order_id": f"o_{c.id}_1", "checkout_id": c.checkout["checkout_id"], "value": value,
            "revenue": value, "currency": "USD", "products": c.checkout["products"]})

    def _post_purchase(self, c: Customer) -> None:
        """Earlier orders moving along today: shipping and delivery updates, a few refunds."""
        rng = c.rng
        if rng.random() >= 0.15:
            return
        t = self.start + rng.uniform(0, self.active_hours) * HOUR
        c.events.append(self._track(c, "Order Shipped", t, {
            "order_id": f"o_{c.id}_p1", "carrier": "UPS",
            "tracking_url": f"https://shop.example/track/o_{c.id}_p1"}))
        if rng.random() < 0.4:
            c.events.append(self._track(c, "Order Delivered", t + rng.uniform(0.5, 6) * HOUR,
                                        {"order_id": f"o_{c.id}_p0"}))
        if rng.random() < 0.1:
            c.events.append(self._track(c, "Refund Initiated", t + rng.uniform(0.5, 6) * HOUR,
                                        {"order_id": f"o_{c.id}_p0", "value": 24.0,
                                         "currency": "USD"}))

    def _malformed_events(self, rate: float) -> list[dict]:
        """Broken input, one kind after the other: non-JSON bytes, no userId, unknown type."""
        rng = random.Random(f"{self.seed}:malformed")
        valid = sorted((e for c in self.customers.values() for e in c.events),
                       key=lambda e: e["messageId"])
        out = []
        for i in range(round(rate * len(valid))):
            base = dict(rng.choice(valid), messageId=self._message_id(rng))
            kind = i % 3
            if kind == 0:
                raw = orjson.dumps(base)
                out.append({"kind": "raw", "key": base["userId"], "timestamp": base["timestamp"],
                            "value": raw[: len(raw) // 2]})
            elif kind == 1:
                base.pop("userId")
                out.append(base)
            else:
                out.append({"type": "page", "messageId": base["messageId"],
                            "userId": base["userId"], "name": "Home",
                            "timestamp": base["timestamp"]})
        return out


# -- the long run: repeat purchase and spend with a known answer ---------------------------------

DAY = 86400.0
#: every outcome record field of schemas/outcome.schema.json, plus the at-least-once dedupe id
OUTCOME_FIELDS = ("outcome_id", "type", "customer_id", "flow_id", "enrollment_id", "step_id",
                  "variant", "reason", "message_sid", "segments", "encoding", "error_code",
                  "revenue", "currency", "phone_masked", "idempotency_key", "event_time",
                  "processing_time", "details")


@dataclass
class Shopper:
    """One customer of :class:`RepeatPurchaseSimulator` and their whole purchase history."""

    id: str
    variant: str                      # treatment | control (first enrollment's arm)
    currency: str                     # every order of theirs is in this currency
    rate: float                       # orders per day
    typical: float                    # their typical order value
    enrolled_at: float                # first enrollment
    persuaded: bool                   # treatment only: the texts bring one extra order
    orders: list[tuple[float, float]] = field(default_factory=list)  # (time, value), sorted
    reenrolled_at: float | None = None

    def before(self) -> list[tuple[float, float]]:
        return [o for o in self.orders if o[0] < self.enrolled_at]


class RepeatPurchaseSimulator:
    """``n_customers`` enrolled in one flow, with purchase histories before and after, whose
    repeat purchase and revenue at any horizon have a closed form — the answer the report's
    30/60/90-day figures and CUPED are checked against.

    The model (all draws deterministic per ``seed``):

    * Each customer buys as a Poisson process with their own rate ``r ~ Gamma(k, s)``
      orders per day (``k = rate_shape``; mean ``mean_orders_per_year / 365``): loyal
      customers and one-off buyers. Every order is worth ``a x U(0.8, 1.2)`` (cents),
      with the customer's typical value ``a ~ LogNormal(log(order_value_median),
      order_value_sigma)``, in the customer's currency (EUR with ``eur_share``, else USD).
    * Enrollment times are uniform over ``enroll_days`` from ``start_time``; the data ends
      ``tail_days`` after the last possible enrollment (:attr:`as_of`), so later
      enrollments' 60- and 90-day windows are still open: the report must leave them out.
    * Before enrolling, the same process over ``pre_days`` gives the pre-enrollment orders
      and spend (the CUPED covariate): they share ``r`` and ``a`` with what follows, so
      pre-period and post-period spend are correlated, as in a real shop.
    * Texts work: a treatment customer is *persuaded* with probability ``q`` and then places
      one extra order at a uniform time in the first ``boost_days`` after enrolling, worth
      ``persuaded_value x a x U(0.8, 1.2)``. ``q`` is set from ``uplift_30``, the true
      absolute uplift of the 30-day repeat-purchase rate.

    Hence, with ``P_c(N) = 1 - (1 + s N)^-k`` (a Gamma mixture of Poisson processes has
    no order in N days with probability ``(1 + s N)^-k``):
    ``P_t(N) = 1 - (1 - q min(1, N / boost_days)) (1 - P_c(N))``, and the expected revenue
    per enrolled customer at N days in a currency with customer share ``w`` is
    ``w E[r] N E[a]`` for control, plus ``w q min(1, N / boost_days) persuaded_value E[a]``
    for treatment, ``E[a] = median exp(sigma^2 / 2)``.

    The outcome records (:meth:`outcomes`) are what the runtime writes: ``enrolled`` (with
    ``details.pre_enrollment_orders`` and ``pre_enrollment_spend`` unless
    ``declare_history`` is off, so the report must derive them from earlier orders),
    ``sent`` or ``would_send`` and ``completed`` an hour later, one ``ordered`` per order; a
    share ``reenroll_rate`` of customers enrolls a second time, and ``duplicate_rate`` of the
    records is written twice with the same ``outcome_id`` (at-least-once delivery).
    """

    def __init__(self, n_customers: int, seed: int = 0, *, flow_id: str = "post_purchase",
                 holdout: float = 0.5, uplift_30: float = 0.05, boost_days: float = 30.0,
                 mean_orders_per_year: float = 4.0, rate_shape: float = 0.8,
                 order_value_median: float = 45.0, order_value_sigma: float = 0.6,
                 persuaded_value: float = 1.0, eur_share: float = 0.2, pre_days: float = 365.0,
                 enroll_days: float = 180.0, tail_days: float = 45.0,
                 start_time: float | str | datetime = DEFAULT_START,
                 reenroll_rate: float = 0.05, duplicate_rate: float = 0.02,
                 declare_history: bool = True) -> None:
        if not 0 < holdout < 1:
            raise ValueError("holdout must be a fraction strictly between 0 and 1")
        self.seed, self.flow_id, self.holdout = seed, flow_id, holdout
        self.boost_days, self.persuaded_value = boost_days, persuaded_value
        self.shape = rate_shape
        self.scale = mean_orders_per_year / 365.0 / rate_shape   # Gamma scale, per day
        self.median, self.sigma = order_value_median, order_value_sigma
        self.eur_share, self.pre_days = eur_share, pre_days
        self.start = epoch(start_time)
        self.enroll_days = enroll_days
        self.as_of = self.start + (enroll_days + tail_days) * DAY
        self.reenroll_rate, self.duplicate_rate = reenroll_rate, duplicate_rate
        self.declare_history = declare_history
        survive_30 = 1.0 - self.control_repeat_rate(30)
        self.persuade = uplift_30 / (survive_30 * min(1.0, 30 / boost_days))
        if not 0 <= self.persuade <= 1:
            raise ValueError(f"uplift_30={uplift_30} is impossible: 30-day repeat rate is "
                             f"{self.control_repeat_rate(30):.3f} without texts")
        rng = random.Random(f"{seed}:repeat")
        self.shoppers = [self._shopper(rng, i) for i in range(n_customers)]

    # -- the known answer ---------------------------------------------------------------------
    @property
    def mean_order_value(self) -> float:
        return self.median * math.exp(self.sigma ** 2 / 2)

    def control_repeat_rate(self, days: float) -> float:
        """P(at least one order in (enrollment, enrollment + days]) without texts."""
        return 1.0 - (1.0 + self.scale * days) ** -self.shape

    def repeat_rate(self, variant: str, days: float) -> float:
        control = self.control_repeat_rate(days)
        if variant == "control":
            return control
        return 1.0 - (1.0 - self.persuade * self._boosted(days)) * (1.0 - control)

    def repeat_uplift(self, days: float) -> float:
        """True absolute uplift of the repeat-purchase rate at ``days``."""
        return self.repeat_rate("treatment", days) - self.repeat_rate("control", days)

    def currency_share(self, currency: str) -> float:
        return {"EUR": self.eur_share, "USD": 1.0 - self.eur_share}.get(currency, 0.0)

    def revenue_per_customer(self, variant: str, days: float, currency: str = "USD") -> float:
        """Expected revenue per enrolled customer in ``currency`` within ``days``."""
        base = self.shape * self.scale * days * self.mean_order_value
        if variant == "treatment":
            base += (self.persuade * self._boosted(days) * self.persuaded_value
                     * self.mean_order_value)
        return self.currency_share(currency) * base

    def revenue_uplift(self, days: float, currency: str = "USD") -> float:
        return (self.revenue_per_customer("treatment", days, currency)
                - self.revenue_per_customer("control", days, currency))

    def _boosted(self, days: float) -> float:
        return min(1.0, days / self.boost_days)

    # -- the population -----------------------------------------------------------------------
    def _shopper(self, rng: random.Random, i: int) -> Shopper:
        variant = "control" if rng.random() < self.holdout else "treatment"
        currency = "EUR" if rng.random() < self.eur_share else "USD"
        rate = rng.gammavariate(self.shape, self.scale)
        typical = rng.lognormvariate(math.log(self.median), self.sigma)
        enrolled_at = self.start + rng.uniform(0, self.enroll_days) * DAY
        persuaded = variant == "treatment" and rng.random() < self.persuade
        s = Shopper(f"r_{i + 1:06d}", variant, currency, rate, typical, enrolled_at, persuaded)
        t = enrolled_at - self.pre_days * DAY
        while rate > 0:
            t += rng.expovariate(rate) * DAY
            if t > self.as_of:
                break
            if t != enrolled_at:
                s.orders.append((t, self._value(rng, typical)))
        if persuaded:
            t = enrolled_at + rng.uniform(0, self.boost_days) * DAY
            if enrolled_at < t <= self.as_of:
                s.orders.append((t, self._value(rng, typical * self.persuaded_value)))
        s.orders.sort()
        if rng.random() < self.reenroll_rate:
            again = enrolled_at + rng.uniform(5, 40) * DAY
            s.reenrolled_at = again if again <= self.as_of else None
        return s

    @staticmethod
    def _value(rng: random.Random, typical: float) -> float:
        return round(max(0.01, typical * rng.uniform(0.8, 1.2)), 2)

    # -- what the runtime would have written --------------------------------------------------
    def outcomes(self) -> list[dict]:
        """Every outcome record of the population, ordered by processing time, with
        ``duplicate_rate`` of them written twice (same ``outcome_id``)."""
        records: list[dict] = []
        for s in self.shoppers:
            records += self._records(s)
        rng = random.Random(f"{self.seed}:duplicates")
        records += [dict(r) for r in records if rng.random() < self.duplicate_rate]
        return sorted(records, key=lambda r: (r["processing_time"], r["outcome_id"]))

    def _records(self, s: Shopper) -> list[dict]:
        out = []
        for n, at in enumerate((s.enrolled_at, s.reenrolled_at), start=1):
            if at is None:
                continue
            eid = f"en_{self.flow_id}_{s.id}_{n}"
            details: dict = {"entity_id": None, "trigger": "Order Delivered"}
            if self.declare_history:
                before = [o for o in s.orders if o[0] < at]
                spend = sum((Decimal(repr(v)) for _, v in before), Decimal(0))
                details["pre_enrollment_orders"] = len(before)
                details["pre_enrollment_spend"] = {s.currency: str(spend)} if before else {}
            base = {"customer_id": s.id, "flow_id": self.flow_id, "enrollment_id": eid,
                    "variant": s.variant}
            out.append(_outcome("enrolled", at, f"{eid}:enrolled", **base, details=details))
            key = f"{eid}:s1"
            if s.variant == "treatment":
                out.append(_outcome("sent", at + HOUR, f"{key}:sent", **base, step_id="s1",
                                    idempotency_key=key, message_sid=f"SM{s.id}{n}",
                                    segments=1, encoding="GSM-7"))
            else:
                out.append(_outcome("would_send", at + HOUR, f"{key}:would_send", **base,
                                    step_id="s1", idempotency_key=key))
            out.append(_outcome("completed", at + HOUR, f"{eid}:completed", **base,
                                reason="completed"))
        for k, (t, value) in enumerate(s.orders, start=1):
            order_id = f"o_{s.id}_{k}"
            out.append(_outcome("ordered", t, f"ordered:{s.id}:{order_id}", customer_id=s.id,
                                revenue=value, currency=s.currency,
                                details={"order_id": order_id, "discount_used": False}))
        return out


def _outcome(type_: str, t: float, outcome_id: str, **fields) -> dict:
    record = dict.fromkeys(OUTCOME_FIELDS)
    record.update(outcome_id=outcome_id, type=type_, event_time=iso(t),
                  processing_time=iso(t + 1.0), details={})
    record.update(fields)
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m smsflow.demo.simulator --customers N --seed S --holdout H > out.jsonl``:
    the outcome records of a :class:`RepeatPurchaseSimulator` population as JSON lines, to
    try ``smsflow report`` on a population whose answer is known."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m smsflow.demo.simulator",
                                     description=main.__doc__)
    parser.add_argument("--customers", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--uplift-30", type=float, default=0.05,
                        help="true absolute uplift of the 30-day repeat-purchase rate")
    args = parser.parse_args(argv)
    sim = RepeatPurchaseSimulator(args.customers, args.seed, holdout=args.holdout,
                                  uplift_30=args.uplift_30)
    out = sys.stdout.buffer
    for record in sim.outcomes():
        out.write(orjson.dumps(record) + b"\n")
    print("true uplift of the repeat-purchase rate: "
          + ", ".join(f"{d} d {sim.repeat_uplift(d) * 100:+.2f} pp" for d in (30, 60, 90))
          + "; of revenue per enrolled customer at 30 d: "
          + ", ".join(f"{c} {sim.revenue_uplift(30, c):+.2f}" for c in ("USD", "EUR")),
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
