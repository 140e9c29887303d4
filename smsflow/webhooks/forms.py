"""Reading a Twilio webhook body without ever answering 500.

Twilio posts ``application/x-www-form-urlencoded`` UTF-8 bodies with each field once
(media come as ``MediaUrl0``, ``MediaUrl1``, ...). Anything else is refused with a clear
4xx before the signature is even computed (a body we cannot decode cannot have been
signed by Twilio): 413 over the size limit, 400 for another content type (multipart
included), a content-encoding (Twilio never compresses; the server runs with aiohttp's
``auto_decompress`` off, see :data:`SERVER_OPTIONS`, so no decompression bomb and no
parser error for an unknown encoding), bytes or percent-escapes that are not UTF-8, and
too many fields.
Repeated fields are kept as lists so a signed but odd post can still be dead-lettered
with its content; the handler refuses them after the signature check.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

FORM = "application/x-www-form-urlencoded"
# aiohttp server options (AppRunner / TestServer keyword arguments) the webhook app expects
SERVER_OPTIONS = {"auto_decompress": False}


class Rejected(Exception):
    """A request we refuse: HTTP ``status``, a metrics ``reason``, a short ``detail``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


def parse_pairs(text: str, max_fields: int) -> MultiDict:
    """``a=1&b=2`` -> MultiDict; :class:`Rejected` for non-UTF-8 escapes or too many fields."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=max_fields)
    except UnicodeDecodeError as exc:
        raise Rejected(400, "malformed", "malformed: percent-escapes are not UTF-8") from exc
    except ValueError as exc:
        raise Rejected(400, "malformed", f"malformed: more than {max_fields} fields") from exc
    return MultiDict(pairs)


async def read_form(request: web.Request, max_bytes: int, max_fields: int) -> MultiDict:
    """The body of a Twilio webhook as a MultiDict, or :class:`Rejected`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise Rejected(413, "too_large", f"too_large: body over {max_bytes} bytes")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # Twilio never compresses; no zip bombs either
        raise Rejected(400, "malformed", "malformed: content-encoding is not supported")
    if request.content_type != FORM:
        raise Rejected(400, "malformed", f"malformed: content type must be {FORM}")
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise Rejected(400, "malformed", "malformed: charset must be utf-8")
    chunks, size = [], 0
    try:
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > max_bytes:  # chunked or compressed bodies have no honest length
                raise Rejected(413, "too_large", f"too_large: body over {max_bytes} bytes")
            chunks.append(chunk)
    except Rejected:
        raise
    except Exception as exc:  # noqa: BLE001 - bad chunking or content-encoding: the client's fault
        raise Rejected(400, "malformed", "malformed: unreadable body") from exc
    body = b"".join(chunks)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, "malformed", "malformed: body is not UTF-8") from exc
    return parse_pairs(text, max_fields)


def query_params(request: web.Request, max_fields: int) -> MultiDict:
    """The query string decoded the strict way (aiohttp's own decoding is lenient)."""
    return parse_pairs(request.rel_url.raw_query_string, max_fields)


def repeated(form: MultiDict) -> str | None:
    """The first field name that occurs more than once."""
    seen: set[str] = set()
    for name, _ in form.items():  # keys() lists a repeated name once
        if name in seen:
            return name
        seen.add(name)
    return None


def as_record(form: MultiDict) -> dict:
    """JSON-ready dict; a repeated field becomes a list of its values."""
    record: dict = {}
    for name, _ in form.items():
        if name not in record:
            values = form.getall(name)
            record[name] = values[0] if len(values) == 1 else values
    return record
