"""Phone numbers: E.164 normalisation, SMS reachability, time zones and state.

The E.164 string is the key of everything on the phone side (consent, caps, sends), so
every phone that enters the engine goes through :func:`normalize` first. Besides the key
it returns what the compliance gate needs to decide *where* the recipient probably is:
candidate IANA time zones (quiet hours must hold in all of them) and, for US/CA numbers,
the state or province of the area code (state rules such as FL/OK/MD use the area code
as the presumed residence).

Line-type policy (what ``phonenumbers`` can tell without a carrier lookup):

* accepted: ``MOBILE``; ``FIXED_LINE_OR_MOBILE`` (every US/CA number has this type, the
  numbering plan does not separate them); ``VOIP`` (many VoIP numbers receive texts, and
  the provider reports 30006 when one cannot).
* rejected: ``TOLL_FREE`` (``toll_free``), ``PREMIUM_RATE`` (``premium_rate``) and every
  other type: fixed line, shared cost, personal, pager, UAN, voicemail (``not_mobile``).

Use :func:`to_e164` instead where a number must be keyed even if we would not text it
(an inbound STOP is honoured from any number that sent it).
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumberType, geocoder, timezone

from smsflow.core.records.phones import PhoneInfo

__all__ = ["InvalidPhone", "PhoneInfo", "normalize", "to_e164", "mask"]

SMS_CAPABLE_TYPES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.VOIP: "voip",
}
REJECTED_TYPE_REASONS = {
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
}
NANP_STATE_REGIONS = {"US", "CA"}

# Area codes whose territory spans two time zones but for which phonenumbers (9.0.x)
# returns fewer zones when it has no exchange-level data. Adding zones only makes the
# quiet-hours window narrower (it must hold in every candidate), so this errs on the safe
# side. Built from public area-code maps: verify before relying on it as a legal record.
EXTRA_TIME_ZONES = {
    "850": ("America/Chicago",), "448": ("America/Chicago",),  # FL panhandle
    "270": ("America/Chicago",), "364": ("America/Chicago",),  # western KY
    "606": ("America/Chicago",),                               # south-central KY
    "423": ("America/New_York",), "931": ("America/New_York",),  # TN
    "219": ("America/Chicago",), "574": ("America/Chicago",),  # northern IN
    "812": ("America/Chicago",), "930": ("America/Chicago",),  # southern IN
    "906": ("America/Chicago",),                               # MI upper peninsula
    "432": ("America/Denver",),                                # west TX
    "308": ("America/Denver",),                                # western NE
    "620": ("America/Denver",), "785": ("America/Denver",),    # western KS
    "541": ("America/Boise",), "458": ("America/Boise",),      # Malheur County, OR
    "928": ("America/Denver",),                                # Navajo Nation (DST)
    "250": ("America/Edmonton",), "236": ("America/Edmonton",),  # East Kootenay, BC
    "672": ("America/Edmonton",), "778": ("America/Edmonton",),
    "306": ("America/Edmonton",), "639": ("America/Edmonton",),  # Lloydminster, SK
    "807": ("America/Winnipeg",),                              # north-west ON
    "418": ("America/Halifax",), "581": ("America/Halifax",),  # Magdalen Islands, QC
    "367": ("America/Halifax",),
    "867": ("America/Whitehorse", "America/Edmonton", "America/Rankin_Inlet",
            "America/Iqaluit"),                                # YT / NT / NU
}

STATE_CODES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "florida": "FL", "georgia": "GA",
    "hawaii": "HI", "idaho": "ID", "illinois": "IL", "indiana": "IN", "iowa": "IA",
    "kansas": "KS", "kentucky": "KY", "louisiana": "LA", "maine": "ME", "maryland": "MD",
    "massachusetts": "MA", "michigan": "MI", "minnesota": "MN", "mississippi": "MS",
    "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY",
    "north carolina": "NC", "north dakota": "ND", "ohio": "OH", "oklahoma": "OK",
    "oregon": "OR", "pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC",
    "south dakota": "SD", "tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT",
    "virginia": "VA", "washington state": "WA", "washington": "WA", "west virginia": "WV",
    "wisconsin": "WI", "wyoming": "WY", "washington d.c.": "DC",
    "district of columbia": "DC",
    # Canada (the geocoder names provinces; its data spells "British Colombia" once)
    "alberta": "AB", "british columbia": "BC", "british colombia": "BC", "manitoba": "MB",
    "new brunswick": "NB", "newfoundland and labrador": "NL", "nova scotia": "NS",
    "ontario": "ON", "prince edward island": "PE", "quebec": "QC", "saskatchewan": "SK",
    "yukon": "YT", "northwest territories": "NT", "nunavut": "NU",
}
_KNOWN_CODES = frozenset(STATE_CODES.values())


class InvalidPhone(ValueError):
    """A phone the engine will not use; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, raw: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def normalize(raw: object, country: str | None = None,
              default_region: str = "US") -> PhoneInfo:
    """Parse ``raw`` into a textable :class:`PhoneInfo` or raise :class:`InvalidPhone`.

    ``country`` (the customer's ISO country, e.g. from identify traits) decides how a
    national-format number is read; unknown country codes fall back to ``default_region``.
    Extensions are dropped: SMS ignores them.
    """
    number = _parse(raw, country, default_region)
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("invalid_number", raw)
    number_type = phonenumbers.number_type(number)
    if number_type not in SMS_CAPABLE_TYPES:
        raise InvalidPhone(REJECTED_TYPE_REASONS.get(number_type, "not_mobile"), raw)
    region = phonenumbers.region_code_for_number(number) or "ZZ"
    return PhoneInfo(
        e164=_format(number),
        country=region,
        time_zones=list(_time_zones(number)),
        state=_state(number, region),
        line_type=SMS_CAPABLE_TYPES[number_type],
    )


def to_e164(raw: object, default_region: str = "US") -> str:
    """Best-effort E.164 key for a number we must record but may not text.

    Only the length is checked (not the numbering plan or line type): an opt-out from a
    number our metadata calls invalid must still reach that number's consent ledger.
    """
    number = _parse(raw, None, default_region)
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhone("invalid_number", raw)
    return _format(number)


def mask(e164: str | None) -> str:
    """A log-safe form: country calling code and the last two digits ("+1********00").

    Enough to tell two numbers of one customer apart in a log, not enough to dial or to
    narrow a number down to an area.
    """
    digits = "".join(ch for ch in str(e164 or "") if ch.isdigit())
    if len(digits) < 6:
        return "***"
    cc = next((digits[:n] for n in (1, 2, 3) if int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE),
              "")
    hidden = len(digits) - len(cc) - 2
    return f"+{cc}{'*' * hidden}{digits[-2:]}"


def _parse(raw: object, country: str | None, default_region: str) -> phonenumbers.PhoneNumber:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # JSON producers sometimes send digits as a number
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidPhone("empty", raw)
    if not isinstance(raw, str):
        raise InvalidPhone("unparseable", raw)
    region = (country or "").strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        region = default_region
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("unparseable", raw) from exc


def _format(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _time_zones(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    zones = [z for z in timezone.time_zones_for_number(number)
             if z != timezone.UNKNOWN_TIMEZONE]
    if number.country_code == 1:
        area_code = str(number.national_number)[:3]
        zones += [z for z in EXTRA_TIME_ZONES.get(area_code, ()) if z not in zones]
    return tuple(zones)


def _state(number: phonenumbers.PhoneNumber, region: str | None) -> str | None:
    """State/province from the geocoder: "Florida" or "Pensacola, FL" style descriptions."""
    if region not in NANP_STATE_REGIONS:
        return None
    description = geocoder.description_for_number(number, "en").strip()
    code = STATE_CODES.get(description.lower())
    if code:
        return code
    suffix = description.rsplit(",", 1)[-1].strip().upper() if "," in description else ""
    return suffix if suffix in _KNOWN_CODES else None
