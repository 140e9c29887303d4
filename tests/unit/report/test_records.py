from smsflow.report.records import Deduplicated, dedupe, epoch, event_time, horizon
from tests.unit.report.outcomes import T0, enrolled, outcome


def test_repeats_of_an_outcome_id_are_dropped_and_records_without_one_are_kept():
    a = dict(enrolled("a", T0, "control"), outcome_id="x1")
    b = dict(outcome("ordered", "a", T0 + 5), outcome_id="x2")
    plain = {k: v for k, v in enrolled("b", T0, "treatment").items() if k != "outcome_id"}
    # ^ no outcome_id: an older runtime's record
    source = Deduplicated([a, b, dict(a), plain, dict(plain), dict(b, event_time="other")])
    kept = list(source)
    assert kept == [a, b, plain, plain]
    assert source.count == 6 and source.duplicates == 2
    empty = {"type": "sent", "outcome_id": ""}  # an empty id identifies nothing
    assert dedupe([empty, dict(empty)]) == [empty, empty]
    shapeless = Deduplicated([a, {"outcome_id": "x3"}, dict(a, outcome_id=5), "text"])
    assert list(shapeless) == [a] and shapeless.invalid == 3


def test_times_and_the_data_horizon():
    assert epoch("2026-11-28T16:00:00Z") == T0 == epoch("2026-11-28T16:00:00")
    for bad in (None, "", "yesterday", 17, "2026-13-01T00:00:00Z"):
        assert epoch(bad) is None
    record = outcome("ordered", "a", T0)
    assert event_time(dict(record, event_time=None)) == T0 + 1  # falls back to processing
    records = [outcome("enrolled", "a", T0 + 50), outcome("ordered", "a", T0 + 10),
               dict(outcome("sent", "a", T0), processing_time="garbage")]
    assert horizon(records) == T0 + 51 and horizon([]) is None
