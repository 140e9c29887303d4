"""Tracked links: UTM tagging and deterministic, unguessable short codes."""

from urllib.parse import parse_qs, urlsplit

from smsflow.core.links import mint, short_code, with_utm


def test_utm_parameters_are_added_and_existing_ones_kept():
    url = with_utm("https://shop.example/c?x=1&utm_source=email", campaign="cart", content="reminder")
    q = parse_qs(urlsplit(url).query)
    assert q["x"] == ["1"] and q["utm_source"] == ["email"]
    assert q["utm_medium"] == ["sms"] and q["utm_campaign"] == ["cart"] and q["utm_content"] == ["reminder"]


def test_short_codes_are_stable_per_key_and_secret():
    assert short_code("en_1:step", "s1") == short_code("en_1:step", "s1")
    assert short_code("en_1:step", "s1") != short_code("en_1:step", "s2")
    assert short_code("en_1:step", "s1") != short_code("en_2:step", "s1")


def test_mint_builds_the_short_url_on_the_public_host():
    link = mint("https://shop.example/c", flow_id="f", step_id="s", idempotency_key="k",
                public_base_url="https://t.shop.example/", secret="x")
    assert link["short"] == f"https://t.shop.example/l/{link['code']}"
    assert "utm_campaign=f" in link["target"]
