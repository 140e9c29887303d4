"""Outcome normalisation to the public schema."""

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from smsflow.core.outcomes import normalize

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "outcome.schema.json").read_text())


def test_normalized_records_validate_and_keep_extras_in_details():
    record = normalize({"type": "deferred", "customer_id": "c1", "reason": "quiet_hours",
                        "not_before": "2026-11-29T08:00:00Z", "details": {"zone": "UTC"}},
                       "2026-11-28T23:00:00Z")
    assert record["details"] == {"zone": "UTC", "not_before": "2026-11-29T08:00:00Z"}
    assert record["processing_time"] == "2026-11-28T23:00:00Z"
    assert record["message_sid"] is None
    assert not list(Draft202012Validator(SCHEMA).iter_errors(record))


def test_schema_rejects_a_suppression_without_reason():
    record = normalize({"type": "suppressed", "customer_id": "c1"}, "2026-11-28T23:00:00Z")
    assert list(Draft202012Validator(SCHEMA).iter_errors(record))
