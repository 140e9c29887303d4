"""Outcome records in the public shape of ``schemas/outcome.schema.json``."""

from __future__ import annotations

from smsflow.core.flows.effects import OUTCOME_FIELDS


def normalize(record: dict, processing_time: str | None) -> dict:
    """Every schema field present (null when not relevant); other keys move into
    ``details``; ``processing_time`` filled in when missing."""
    details = dict(record.get("details") or {})
    full = {name: None for name in OUTCOME_FIELDS}
    for name, value in record.items():
        if name in full:
            full[name] = value
        else:
            details[name] = value
    full["details"] = details
    if full["processing_time"] is None:
        full["processing_time"] = processing_time
    return full
