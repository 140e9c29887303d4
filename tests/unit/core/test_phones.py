import phonenumbers
import pytest

from smsflow.core.phones import InvalidPhone, PhoneInfo, mask, normalize, to_e164
from smsflow.core.records.base import decode, encode
from smsflow.core.records.customers import Profile


@pytest.mark.parametrize("raw, e164, state, zone", [
    ("(305) 555-0123", "+13055550123", "FL", "America/New_York"),
    ("405-555-0123", "+14055550123", "OK", "America/Chicago"),
    ("+1 410 555 0123", "+14105550123", "MD", "America/New_York"),
    ("415.555.0100", "+14155550100", "CA", "America/Los_Angeles"),
    ("+12125550100", "+12125550100", "NY", "America/New_York"),
    ("+1 850 432 1234", "+18504321234", "FL", "America/Chicago"),  # "Pensacola, FL"
    ("+1 613 555 0100", "+16135550100", "ON", "America/Toronto"),
    ("+1 202 555 0100", "+12025550100", "DC", "America/New_York"),
])
def test_north_american_numbers_get_state_and_zone(raw, e164, state, zone):
    info = normalize(raw)
    assert info.e164 == e164
    assert info.state == state
    assert zone in info.time_zones


def test_us_numbers_are_fixed_line_or_mobile_and_accepted():
    info = normalize("4155550100")
    assert info == PhoneInfo(e164="+14155550100", country="US",
                             time_zones=["America/Los_Angeles"], state="CA",
                             line_type="fixed_line_or_mobile")


def test_country_decides_how_a_national_number_is_read():
    assert normalize("07911 123456", country="GB").e164 == "+447911123456"
    assert normalize("06 12 34 56 78", country="fr").e164 == "+33612345678"


def test_unknown_country_falls_back_to_default_region():
    assert normalize("415 555 0100", country="USA").e164 == "+14155550100"
    assert normalize("0612345678", country=None, default_region="FR").country == "FR"


def test_foreign_mobile_has_no_state():
    info = normalize("+33612345678")
    assert (info.country, info.state, info.line_type) == ("FR", None, "mobile")
    assert info.time_zones == ["Europe/Paris"]


def test_multi_zone_area_codes_keep_every_candidate():
    assert set(normalize("+12085550100").time_zones) == {"America/Boise",
                                                        "America/Los_Angeles"}
    # phonenumbers reports only New_York for 850 at area-code level; the panhandle is Central
    assert set(normalize("+18505550100").time_zones) == {"America/New_York",
                                                        "America/Chicago"}


def test_unknown_time_zone_is_dropped():
    assert "Etc/Unknown" not in normalize("+15145550100").time_zones


@pytest.mark.parametrize("raw, reason", [
    (None, "empty"),
    ("", "empty"),
    ("   ", "empty"),
    (["+14155550100"], "unparseable"),
    ("call me maybe", "unparseable"),
    ("+999123", "unparseable"),
    ("12345", "invalid_number"),
    ("+1 415 555", "invalid_number"),
    ("+1415555010000", "invalid_number"),
    ("+18005550100", "toll_free"),
    ("+19005550100", "premium_rate"),
    ("+442079460000", "not_mobile"),      # London fixed line
    ("+493012345678", "not_mobile"),      # Berlin fixed line
    ("+15005550006", "not_mobile"),       # 500 personal-number range
])
def test_rejections_carry_a_reason(raw, reason):
    with pytest.raises(InvalidPhone) as caught:
        normalize(raw)
    assert caught.value.reason == reason
    assert caught.value.raw == raw


def test_digits_given_as_a_json_number_are_accepted():
    assert normalize(4155550100).e164 == "+14155550100"


def test_extension_is_dropped():
    assert normalize("+1 415 555 0100 ext. 12").e164 == "+14155550100"


def test_every_geographic_us_area_code_maps_to_a_state():
    missing = []
    for area_code in range(200, 1000):
        number = phonenumbers.parse(f"+1{area_code}5550100")
        if (phonenumbers.region_code_for_number(number) != "US"
                or not phonenumbers.is_valid_number(number)
                or phonenumbers.number_type(number) != phonenumbers.PhoneNumberType
                .FIXED_LINE_OR_MOBILE):
            continue
        if normalize(f"+1{area_code}5550100").state is None:
            missing.append(area_code)
    assert missing == []


def test_phone_info_round_trips_as_the_profile_stores_it():
    info = normalize("+12085550100")
    data = encode(Profile(customer_id="c1", phone=info.e164, phone_info=info))
    assert b'"time_zones":["America/Boise","America/Los_Angeles"]' in data
    stored = decode(data, Profile).phone_info
    assert stored == info and stored.time_zones == ["America/Boise", "America/Los_Angeles"]
    assert decode(encode(info), PhoneInfo) == info


def test_to_e164_keys_numbers_we_would_not_text():
    assert to_e164("+442079460000") == "+442079460000"
    assert to_e164("(800) 555-0100") == "+18005550100"
    with pytest.raises(InvalidPhone) as caught:
        to_e164("123")
    assert caught.value.reason == "invalid_number"


@pytest.mark.parametrize("e164, masked", [
    ("+14155550100", "+1********00"),
    ("+33612345678", "+33*******78"),
    ("+447911123456", "+44********56"),
    ("+4930123", "+49***23"),
    ("+861391234567890", "+86***********90"),
    ("+123", "***"),
    ("", "***"),
    (None, "***"),
])
def test_mask_keeps_the_country_code_and_the_last_two_digits(e164, masked):
    assert mask(e164) == masked


def test_mask_never_reveals_the_area_code_or_the_line():
    for e164 in ("+14155550100", "+447911123456", "+4930123", "+861391234567890",
                 "+12085550199"):
        masked = mask(e164)
        shown = masked.replace("+", "").replace("*", "")
        assert len(masked) == len(e164)  # the length stays (two numbers stay comparable)
        assert len(shown) <= 5 and shown.endswith(e164[-2:])
        assert e164[1:-2] not in masked  # no area code / exchange / subscriber digits
    assert mask("+14155550100") == mask("+12125550100")  # same country, same last two
    assert mask("+14155550100") != mask("+14155550101")
