import random
from decimal import Decimal

import orjson

from smsflow.report.money import (
    UNKNOWN_CURRENCY,
    currency_code,
    fmt,
    merged,
    spend_by_currency,
    to_decimal,
)


def test_json_numbers_become_the_decimal_that_was_written():
    rng = random.Random(3)
    for _ in range(5000):
        written = f"{rng.randint(0, 10**9)}.{rng.randint(0, 99):02d}"
        assert to_decimal(orjson.loads(written)) == Decimal(written)
    assert to_decimal(orjson.loads("19.99")) == Decimal("19.99") != Decimal(19.99)
    assert to_decimal(7) == Decimal(7) and to_decimal("123.40") == Decimal("123.40")
    assert to_decimal(1e-7) == Decimal("1E-7")


def test_exact_sums_where_floats_drift():
    amounts = [orjson.loads(b"0.1")] * 10_000 + [orjson.loads(b"19.99")] * 3
    assert sum(amounts) != 1059.97  # the float sum is off
    assert sum((to_decimal(a) for a in amounts), Decimal(0)) == Decimal("1059.97")


def test_what_is_not_an_amount_is_none_never_zero():
    for value in (None, True, False, float("nan"), float("inf"), "abc", "NaN", "Infinity",
                  [1], {"USD": 1}, ""):
        assert to_decimal(value) is None, value


def test_currency_codes_and_the_unknown_bucket():
    assert currency_code("usd") == "USD" and currency_code(" EUR ") == "EUR"
    for bad in (None, "US", "EURO", "12€", 840, ""):
        assert currency_code(bad) == UNKNOWN_CURRENCY


def test_pre_enrollment_spend_object_is_read_per_currency():
    spend = spend_by_currency({"USD": "123.40", "eur": 5, "XX": "1.10", "GBP": "abc",
                               "usd": "0.60"})
    assert spend == {"USD": Decimal("124.00"), "EUR": Decimal(5), UNKNOWN_CURRENCY: Decimal("1.10")}
    assert spend_by_currency({}) == {}
    assert spend_by_currency("123.40") is None and spend_by_currency(None) is None


def test_merging_keeps_currencies_apart_and_formatting_rounds_without_floats():
    total = merged([{"USD": Decimal("1.10")}, {"EUR": Decimal("2.20"), "USD": Decimal("0.05")}])
    assert total == {"USD": Decimal("1.15"), "EUR": Decimal("2.20")}
    assert fmt(Decimal("1234.565"), "USD") == "USD 1,234.56"  # half-even, exact
    assert fmt(Decimal("1234.575")) == "1,234.58" and fmt(None) == "—"
