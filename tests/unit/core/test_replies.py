import pytest

from smsflow.core.replies import TEMPLATES, reply_for

BRAND = "Glow Skincare Studio"  # 20 characters
HELP = "help@glow.example"
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")

ALL_KINDS = ["opted_out", "opted_in", "help_requested", "confirmation_requested"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_reply_names_the_brand_fits_one_segment_and_is_gsm7(kind):
    text = reply_for(kind, BRAND, HELP)
    assert text.startswith(f"{BRAND}: ")
    assert len(text) <= 160
    assert set(text) <= GSM7_BASIC


def test_stop_reply_confirms_and_promises_silence():
    text = reply_for("opted_out", BRAND, HELP)
    assert "unsubscribed" in text and "no more messages" in text
    assert "Msg & data rates" not in text  # nothing but the confirmation


@pytest.mark.parametrize("kind", ["opted_in", "confirmation_requested"])
def test_opt_in_texts_carry_the_ctia_disclosures(kind):
    text = reply_for(kind, BRAND, HELP, frequency="Up to 4 msgs/mo.")
    for required in ("Up to 4 msgs/mo.", "Msg & data rates may apply", "HELP", "STOP"):
        assert required in text
    assert ".." not in text


def test_confirmation_request_says_how_to_confirm():
    assert "Reply Y to join" in reply_for("confirmation_requested", BRAND, HELP)


def test_help_reply_gives_contact_frequency_rates_and_stop():
    text = reply_for("help_requested", BRAND, "1-800-555-0100")
    for required in ("1-800-555-0100", "Msg frequency varies", "Msg & data rates may apply",
                     "STOP"):
        assert required in text


def test_replies_are_never_marketing():
    for kind in ALL_KINDS:
        text = reply_for(kind, BRAND, HELP).lower()
        assert not any(word in text for word in ("% off", "sale", "discount", "shop", "http"))


def test_every_template_is_covered():
    assert sorted(TEMPLATES) == sorted(ALL_KINDS)


@pytest.mark.parametrize("kind, brand, contact", [
    ("opted_in", "", HELP), ("opted_in", BRAND, " "), ("sent", BRAND, HELP),
])
def test_refuses_incomplete_or_unknown_replies(kind, brand, contact):
    with pytest.raises(ValueError):
        reply_for(kind, brand, contact)
