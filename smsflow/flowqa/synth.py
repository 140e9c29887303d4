"""A synthetic week of a D2C shop's events, for backtests and benchmarks (deterministic).

``python -m smsflow.flowqa.synth --customers 110000 --out week.jsonl`` writes about a
million events: each customer's identify (phone, time zone for most, SMS consent for
most), for returning customers their earlier orders (some with a discount code, products
with a cost) and SMS link clicks, then the week itself: browsing sessions at local daytime
hours, carts, checkouts (a quarter bought within 90 minutes, some hours later, the rest
abandoned), orders, shipping and delivery updates, refunds, back-in-stock requests and
the product-level restocks, quiz completions. Phones are 555 numbers spread over area
codes of many states (FL, OK and MD with their stricter rules among them).

``examples/week.jsonl`` is ``--customers 120 --seed 14``.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any

import orjson

from smsflow.clock import iso, parse_iso

DAY, HOUR, MIN = 86400.0, 3600.0, 60.0
DEFAULT_START = "2026-11-23T00:00:00Z"   # a Monday
AREA_CODES = {  # area code: (time zone, share of customers)
    "415": ("America/Los_Angeles", 4), "213": ("America/Los_Angeles", 4),
    "310": ("America/Los_Angeles", 3), "619": ("America/Los_Angeles", 2),
    "206": ("America/Los_Angeles", 2), "503": ("America/Los_Angeles", 2),
    "702": ("America/Los_Angeles", 1), "602": ("America/Phoenix", 2),
    "303": ("America/Denver", 2), "801": ("America/Denver", 1),
    "312": ("America/Chicago", 4), "713": ("America/Chicago", 3), "214": ("America/Chicago", 3),
    "512": ("America/Chicago", 2), "405": ("America/Chicago", 1), "612": ("America/Chicago", 1),
    "212": ("America/New_York", 5), "718": ("America/New_York", 3),
    "617": ("America/New_York", 2), "215": ("America/New_York", 2),
    "305": ("America/New_York", 3), "813": ("America/New_York", 2),
    "407": ("America/New_York", 2), "404": ("America/New_York", 3),
    "410": ("America/New_York", 1), "704": ("America/New_York", 2),
    "202": ("America/New_York", 1), "313": ("America/New_York", 1),
}
PRODUCTS = (
    ("sku_moist", "Daily Moisturizer", 42.0, 13.0, "skincare"),
    ("sku_serum", "Vitamin C Serum", 58.0, 14.0, "skincare"),
    ("sku_clean", "Gentle Cleanser", 24.0, 9.0, "skincare"),
    ("sku_spf", "Mineral SPF 50", 32.0, 11.0, "suncare"),
    ("sku_beans", "Single-Origin Coffee Beans", 19.0, 9.5, "coffee"),
    ("sku_grind", "Burr Grinder", 129.0, 78.0, "coffee"),
    ("sku_mug", "Ceramic Travel Mug", 28.0, 8.0, "accessories"),
    ("sku_tote", "Canvas Tote", 35.0, 12.0, "accessories"),
    ("sku_set", "Complete Routine Set", 149.0, 52.0, "skincare"),
)
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kiri",
         "Liam", "Maya", "Noor", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq")
CONSENT_TEXT = "Yes, text me offers. Msg & data rates may apply. Reply STOP to opt out."


class Week:
    def __init__(self, customers: int, seed: int = 0, start: str = DEFAULT_START,
                 days: float = 7.0) -> None:
        self.n, self.seed = customers, seed
        self.start, self.days = parse_iso(start), days
        self.end = self.start + days * DAY
        codes = [code for code, (_, weight) in AREA_CODES.items() for _ in range(weight)]
        self.codes = codes
        self.restocks: dict[str, float] = {}

    def events(self) -> list[dict[str, Any]]:
        """Every event, sorted by timestamp (ties by messageId)."""
        items: list[tuple[float, str, dict[str, Any]]] = []
        for i in range(self.n):
            for t, event in self._customer(i):
                items.append((t, event["messageId"], event))
        rng = random.Random(f"{self.seed}:restock")
        for sku, _, _, _, _ in PRODUCTS:
            if rng.random() < 0.5:
                t = self.start + rng.uniform(0.5, self.days - 0.5) * DAY
                event = {"type": "track", "messageId": f"rs-{sku}-{int(t)}",
                         "event": "Back In Stock", "timestamp": iso(t, "milliseconds"),
                         "properties": {"product_id": sku, "in_stock": True,
                                        "inventory": rng.randint(5, 200),
                                        "product_url": f"https://shop.example/products/{sku}"}}
                items.append((t, event["messageId"], event))
        items.sort(key=lambda x: (x[0], x[1]))
        return [event for _, _, event in items]

    def write(self, out: IO[bytes]) -> int:
        count = 0
        for event in self.events():
            out.write(orjson.dumps(event) + b"\n")
            count += 1
        return count

    # -- one customer ------------------------------------------------------------------
    def _customer(self, i: int) -> Iterator[tuple[float, dict[str, Any]]]:
        rng = random.Random(f"{self.seed}:{i}")
        cid = f"c_{i:06d}"
        code = rng.choice(self.codes)
        tz = AREA_CODES[code][0]
        phone = f"({code}) 555-{(i // len(AREA_CODES)) % 10000:04d}" if i < 10000 * len(AREA_CODES) \
            else f"({code}) 555-{rng.randrange(10000):04d}"
        returning = rng.random() < 0.45
        deals = rng.random() < 0.3                      # a discount lover
        seq = iter(range(1_000_000))

        def mid() -> str:
            return f"{cid}-{next(seq)}"

        def track(t: float, event_name: str, /, **props: Any) -> tuple[float, dict[str, Any]]:
            return t, {"type": "track", "messageId": mid(), "userId": cid, "event": event_name,
                       "timestamp": iso(t, "milliseconds"), "properties": props}

        first = self.start - (rng.uniform(20, 150) * DAY if returning else
                              rng.uniform(0, self.days - 0.2) * DAY)
        traits: dict[str, Any] = {"first_name": rng.choice(NAMES),
                                  "email": f"{cid}@example.com", "phone": phone, "country": "US"}
        if rng.random() < 0.6:
            traits["timezone"] = tz
        draw = rng.random()
        if draw < 0.78:
            traits["sms_consent"] = {"status": "subscribed", "source": rng.choice(
                ("checkout", "popup", "keyword")), "timestamp": iso(first), "text": CONSENT_TEXT}
        elif draw < 0.83:
            traits["sms_consent"] = {"status": "unsubscribed", "source": "preference_center",
                                     "timestamp": iso(first)}
        yield first, {"type": "identify", "messageId": mid(), "userId": cid,
                      "timestamp": iso(first, "milliseconds"), "traits": traits}
        order_no = 0
        if returning:
            t = first
            for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 6))):
                t += rng.uniform(3, 40) * DAY
                if t >= self.start - HOUR:
                    break
                order_no += 1
                yield self._order(rng, cid, order_no, t, deals, track)
            if rng.random() < 0.25:
                yield track(self.start - rng.uniform(1, 25) * DAY, "SMS Link Clicked",
                            url="https://shop.example/")
        local_offset = {"America/Los_Angeles": -8, "America/Phoenix": -7, "America/Denver": -7,
                        "America/Chicago": -6, "America/New_York": -5}[tz] * HOUR
        sessions = 1 + (rng.random() < 0.5) + (rng.random() < 0.2)
        if not returning:
            sessions = max(1, sessions - 1)
        for _ in range(sessions):
            day = rng.randrange(int(self.days))
            hour = rng.choices(range(24), weights=[1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 10, 11, 11,
                                                  10, 10, 10, 11, 13, 15, 16, 14, 9, 4])[0]
            t = self.start + day * DAY + hour * HOUR + rng.uniform(0, HOUR) - local_offset
            if not (first < t < self.end):
                continue
            yield from self._session(rng, cid, t, deals, track, lambda: order_no)
            order_no += 10  # orders in sessions number themselves past the history

    def _session(self, rng: random.Random, cid: str, t: float, deals: bool, track: Any,
                 order_no: Any) -> Iterator[tuple[float, dict[str, Any]]]:
        viewed = rng.sample(PRODUCTS, rng.randint(1, 4))
        for sku, name, price, _, category in viewed:
            yield track(t, "Product Viewed", product_id=sku, name=name, price=price,
                        category=category, url=f"https://shop.example/products/{sku}")
            t += rng.uniform(0.3, 4) * MIN
        if rng.random() < 0.03:
            yield track(t, "Quiz Completed", result=rng.choice(("dry", "oily", "combination")),
                        result_url="https://shop.example/quiz/results")
        if rng.random() < 0.02:
            sku, name = viewed[0][0], viewed[0][1]
            yield track(t, "Back In Stock Requested", product_id=sku, name=name)
        if rng.random() > 0.38:
            return
        items = [self._line(rng, p) for p in viewed[:rng.randint(1, len(viewed))]]
        for item in items:
            yield track(t, "Added to Cart", currency="USD", **item)
            t += rng.uniform(0.2, 2) * MIN
        if rng.random() > 0.55:
            return
        t += rng.uniform(1, 8) * MIN
        checkout_id = f"ch_{cid}_{int(t)}"
        value = round(sum(i["price"] * i["quantity"] for i in items), 2)
        yield track(t, "Checkout Started", checkout_id=checkout_id, value=value, currency="USD",
                    checkout_url=f"https://shop.example/checkout/{checkout_id}", products=items)
        draw = rng.random()
        if draw < 0.25:
            bought = t + rng.uniform(2, 90) * MIN
        elif draw < 0.40:
            bought = t + rng.uniform(1, 30) * HOUR
        else:
            return
        if bought >= self.end:
            return
        n = order_no() + 1
        yield self._order(rng, cid, n, bought, deals, track, checkout_id, items)
        shipped = bought + rng.uniform(0.5, 2) * DAY
        order_id = f"o_{cid}_{n}"
        if shipped < self.end:
            yield track(shipped, "Order Shipped", order_id=order_id, carrier="UPS",
                        tracking_url=f"https://shop.example/track/{order_id}")
            delivered = shipped + rng.uniform(1, 4) * DAY
            if delivered < self.end:
                yield track(delivered, "Order Delivered", order_id=order_id)
                if rng.random() < 0.03:
                    yield track(delivered + rng.uniform(1, 20) * HOUR, "Refund Initiated",
                                order_id=order_id, value=value, currency="USD")

    @staticmethod
    def _line(rng: random.Random, product: tuple[str, str, float, float, str]) -> dict[str, Any]:
        sku, name, price, cost, category = product
        return {"product_id": sku, "name": name, "price": price, "cost": cost,
                "quantity": rng.choice((1, 1, 1, 2)), "category": category}

    def _order(self, rng: random.Random, cid: str, n: int, t: float, deals: bool, track: Any,
               checkout_id: str | None = None,
               items: list[dict[str, Any]] | None = None) -> tuple[float, dict[str, Any]]:
        items = items or [self._line(rng, p) for p in rng.sample(PRODUCTS, rng.randint(1, 2))]
        value = round(sum(i["price"] * i["quantity"] for i in items), 2)
        props: dict[str, Any] = {"order_id": f"o_{cid}_{n}", "value": value, "currency": "USD",
                                 "products": items}
        if checkout_id:
            props["checkout_id"] = checkout_id
        if rng.random() < (0.8 if deals else 0.1):
            props["discount_code"] = rng.choice(("WELCOME10", "SAVE15", "VIP20"))
        return track(t, "Order Placed", **props)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smsflow.flowqa.synth",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default=DEFAULT_START, help="the week's first instant (UTC)")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--out", help="output file (default: standard output)")
    args = parser.parse_args(argv)
    week = Week(args.customers, args.seed, args.start, args.days)
    if args.out:
        with open(args.out, "wb") as out:
            count = week.write(out)
    else:
        count = week.write(sys.stdout.buffer)
    print(f"{count:,} events for {args.customers:,} customers from {iso(week.start)} "
          f"({args.days:g} days)", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
