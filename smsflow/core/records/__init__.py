"""Typed records: every value that crosses a module or topic boundary.

One msgspec ``Struct`` per record kind (see ``docs/DESIGN.md`` for why msgspec). Code and
tests build records only through these classes, so a field spelled differently by a
writer and a reader is a type error (mypy) or a decode error, never a silent ``None``.
Public topics' JSON Schemas in ``schemas/`` are the language-neutral contract; a test
proves each public record type and its schema agree.
"""

from smsflow.core.records.base import Record, decode, decoder, encode, to_builtins

__all__ = ["Record", "decode", "decoder", "encode", "to_builtins"]
