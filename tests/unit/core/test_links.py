"""Tracked links: UTM tagging, deterministic unguessable short codes, and template-filled
URLs made valid URIs."""

from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsflow.core.links import code_of, mint, safe_url, short_code, with_utm
from smsflow.core.records.sends import Link


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
    assert isinstance(link, Link)
    assert link.short == f"https://t.shop.example/l/{short_code('k', 'x')}"
    assert code_of(link.short) == short_code("k", "x")
    assert "utm_campaign=f" in link.target


# ----------------------------------------- issue 9: template-filled URLs are percent-encoded

@pytest.mark.parametrize("filled, expected", [
    ("https://cdn.example/img/Face Cream.jpg", "https://cdn.example/img/Face%20Cream.jpg"),
    ("  https://cdn.example/a b.png\\n", "https://cdn.example/a%20b.png%5Cn"),
    ("https://shop.example/p/crème-brûlée", "https://shop.example/p/cr%C3%A8me-br%C3%BBl%C3%A9e"),
    ("https://shop.example/s?q=\"red dress\"&page=2#top",
     "https://shop.example/s?q=%22red%20dress%22&page=2#top"),
    ("https://shop.example/p/Face%20Cream.jpg", "https://shop.example/p/Face%20Cream.jpg"),  # kept
    ("https://shop.example/sale/50%off", "https://shop.example/sale/50%25off"),  # stray %
    ("https://shop.example/c?x=1&utm_source=sms", "https://shop.example/c?x=1&utm_source=sms"),
    ("https://shop.example/<tag>{x}|y^", "https://shop.example/%3Ctag%3E%7Bx%7D%7Cy%5E"),
    ("", ""),
])
def test_safe_url_makes_a_valid_uri(filled, expected):
    assert safe_url(filled) == expected


URI_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                "-._~:/?#[]@!$&'()*+,;=%")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_safe_url_output_is_always_uri_characters_and_decodes_back(path):
    url = safe_url("https://cdn.example/" + path)
    assert set(url) <= URI_CHARS
    for i, ch in enumerate(url):  # every "%" starts an escape
        if ch == "%":
            assert len(url[i + 1:i + 3]) == 2 and all(c in "0123456789ABCDEFabcdef"
                                                       for c in url[i + 1:i + 3])
    assert safe_url(url) == url  # idempotent: a safe URL is left as it is
    if "%" not in path:
        assert unquote(url) == ("https://cdn.example/" + path).strip()
