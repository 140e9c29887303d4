"""SMS encoding and segment counting, computed before sending (billing and throughput unit).

One character outside GSM-7 makes the whole message UCS-2. GSM-7 extension characters
cost two septets and UCS-2 characters outside the BMP (most emoji) two 16-bit units;
neither pair is split across segments, which is why counting packs segment by segment
instead of dividing the length. Rules follow twilio.md §6-7 and Twilio's
message-segment-calculator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7, UCS2 = "GSM-7", "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}
CONCATENATED = {GSM7: 153, UCS2: 67}

MAX_BODY_CHARS = 1600  # Twilio error 21617 above this
MAX_SEGMENTS = 10  # our rule: longer texts cost too much and carriers drop long UCS-2 (30019)
MAX_MEDIA = 10
MMS_MAX_BYTES = 5 * 1024 * 1024  # total per MMS
NON_IMAGE_MAX_BYTES = 500 * 1024  # per non-image file (spec text; carriers vary, twilio.md §7)
IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/gif"})


class Analysis(NamedTuple):
    encoding: str
    segments: int
    length: int  # septets (GSM-7) or 16-bit units (UCS-2)


def _units(body: str) -> tuple[str, list[int]]:
    """The encoding and the cost of each character in it."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body):
        return GSM7, [2 if c in GSM7_EXTENSION else 1 for c in body]
    return UCS2, [2 if ord(c) > 0xFFFF else 1 for c in body]


def analyze(body: str) -> Analysis:
    """Encoding, segment count and encoded length of an SMS body ("" -> 0 segments)."""
    encoding, costs = _units(body)
    length = sum(costs)
    if length == 0:
        return Analysis(encoding, 0, 0)
    if length <= SINGLE[encoding]:
        return Analysis(encoding, 1, length)
    size, segments, used = CONCATENATED[encoding], 1, 0
    for cost in costs:
        if used + cost > size:
            segments, used = segments + 1, 0
        used += cost
    return Analysis(encoding, segments, length)


def check_message(body: str, media_urls: Sequence[str] = (),
                  max_segments: int = MAX_SEGMENTS) -> str | None:
    """The reason this message must not be sent, or None.

    Reasons: ``empty_message``, ``body_too_long`` (over 1,600 characters or over
    ``max_segments``), ``too_many_media``, ``bad_media_url``. Media sizes cannot be
    known without fetching the files; see :func:`check_media_size`.
    """
    if not body and not media_urls:
        return "empty_message"
    if len(body) > MAX_BODY_CHARS or analyze(body).segments > max_segments:
        return "body_too_long"
    if len(media_urls) > MAX_MEDIA:
        return "too_many_media"
    if any(not str(u).startswith(("https://", "http://")) for u in media_urls):
        return "bad_media_url"
    return None


def check_media_size(sizes: Sequence[tuple[str, int]]) -> str | None:
    """``[(content_type, bytes), ...]`` -> ``media_too_large`` when over Twilio's MMS limits."""
    if sum(n for _, n in sizes) > MMS_MAX_BYTES:
        return "media_too_large"
    if any(t.lower() not in IMAGE_TYPES and n > NON_IMAGE_MAX_BYTES for t, n in sizes):
        return "media_too_large"
    return None
