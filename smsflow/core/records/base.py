"""The base class and the JSON codec shared by every record type."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()


class Record(msgspec.Struct, kw_only=True):
    """A typed record. Unknown JSON fields are ignored on decode (forward compatible:
    an older worker reads a newer record), every field is written on encode."""


def encode(value: Any) -> bytes:
    """JSON bytes of a record (or of plain data)."""
    return _ENCODER.encode(value)


@lru_cache(maxsize=None)
def decoder(kind: Any) -> msgspec.json.Decoder[Any]:  # kind: a class or a union type
    """A cached, validating JSON decoder for ``kind`` (a record class or a union)."""
    return msgspec.json.Decoder(kind)


def decode(raw: bytes | bytearray | memoryview | str, kind: type[T]) -> T:
    """Validate and decode JSON into ``kind``; raises ``msgspec.ValidationError`` or
    ``msgspec.DecodeError`` with a message naming the field."""
    result: T = decoder(kind).decode(raw)  # type: ignore[arg-type]
    return result


def to_builtins(value: Any) -> Any:
    """Plain dicts/lists of a record (for Liquid contexts and conditions)."""
    return msgspec.to_builtins(value)
