"""Segment counting against known examples (Twilio's segment calculator rules)."""

import pytest

from smsflow.core.segments import (GSM7, GSM7_BASIC, GSM7_EXTENSION, UCS2, analyze,
                                   check_media_size, check_message)


def test_alphabet_has_127_basic_characters_and_9_extension_characters():
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10  # nine printable + form feed


@pytest.mark.parametrize("body, expected", [
    ("", (GSM7, 0, 0)),
    ("Hello", (GSM7, 1, 5)),
    ("a" * 160, (GSM7, 1, 160)),
    ("a" * 161, (GSM7, 2, 161)),
    ("a" * 306, (GSM7, 2, 306)),
    ("a" * 307, (GSM7, 3, 307)),
    ("€" * 80, (GSM7, 1, 160)),  # extension chars cost two septets
    ("€" * 81, (GSM7, 2, 162)),
    ("[x]", (GSM7, 1, 5)),
    ("Ça va? ñ ü à é £ ¥ §", (GSM7, 1, 20)),
    ("ç", (UCS2, 1, 1)),  # lowercase c-cedilla is not GSM-7
    ("`", (UCS2, 1, 1)),
    ("Ó" * 70, (UCS2, 1, 70)),
    ("Ó" * 71, (UCS2, 2, 71)),
    ("Ó" * 134, (UCS2, 2, 134)),
    ("Ó" * 135, (UCS2, 3, 135)),
    ("😀", (UCS2, 1, 2)),  # surrogate pair: two units
    ("😀" * 35, (UCS2, 1, 70)),
    ("Thanks “Ana” – see you…", (UCS2, 1, 23)),
])
def test_known_examples(body, expected):
    assert analyze(body) == expected


def test_extension_character_is_never_split_across_segments():
    body = "a" * 152 + "€" + "a" * 152  # 306 septets, but the € cannot straddle segment 1
    assert analyze(body) == (GSM7, 3, 306)
    assert analyze("a" * 151 + "€" + "a" * 153) == (GSM7, 2, 306)


def test_surrogate_pair_is_never_split_across_segments():
    body = "a" * 66 + "😀" + "a" * 66  # 134 units; the emoji cannot straddle segment 1
    assert analyze(body) == (UCS2, 3, 134)
    assert analyze("😀" * 36) == (UCS2, 2, 72)  # 33 pairs fit in 67 units, then 3 more


def test_one_non_gsm_character_makes_the_whole_message_ucs2():
    assert analyze("a" * 100).segments == 1
    assert analyze("a" * 100 + "🙂").segments == 2  # 102 units > 70


def test_check_message_reasons():
    assert check_message("hi") is None
    assert check_message("", ["https://cdn.example/a.png"]) is None
    assert check_message("") == "empty_message"
    assert check_message("a" * 1601) == "body_too_long"
    assert check_message("a" * 1530) is None  # 10 segments of 153
    assert check_message("a" * 1531) == "body_too_long"  # 11 segments
    assert check_message("é😀" * 400) == "body_too_long"  # 1,200 UCS-2 units, 18 segments
    assert check_message("hi", [f"https://cdn.example/{i}.png" for i in range(11)]) == "too_many_media"
    assert check_message("hi", ["ftp://cdn.example/a.png"]) == "bad_media_url"


def test_media_size_limits():
    assert check_media_size([("image/png", 4_000_000)]) is None
    assert check_media_size([("image/png", 3_000_000), ("image/jpeg", 3_000_000)]) == "media_too_large"
    assert check_media_size([("application/pdf", 600_000)]) == "media_too_large"
    assert check_media_size([("text/vcard", 10_000)]) is None
