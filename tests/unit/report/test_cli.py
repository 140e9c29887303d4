"""``smsflow report`` end to end on a JSON-lines export, plus the CSV and JSON writers."""

import csv
import json
import re

import orjson
import pytest

from smsflow.cli import main
from tests.unit.report.test_aggregate import arm_stream


def export(tmp_path, records, extra=b""):
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + extra)
    return path


def test_report_prints_the_table_and_writes_every_output(tmp_path, capsys):
    records = arm_stream("treatment", 400, 64, clickers=80) + arm_stream("control", 400, 40)
    path = export(tmp_path, records, extra=b"garbage\n")
    out = {ext: tmp_path / f"report.{ext}" for ext in ("png", "csv", "json")}
    code = main(["report", "--input", str(path), "--chart", str(out["png"]),
                 "--csv", str(out["csv"]), "--json", str(out["json"])])
    assert code == 0
    captured = capsys.readouterr()
    text = " ".join(captured.out.split())  # the table may wrap
    assert "treatment" in text and "absolute lift +6.00 pp" in text
    assert "relative lift +60.0%" in text and "1 malformed records skipped" in text
    assert f"{path}:line {len(records) + 1}: skipped" in captured.err
    rows = list(csv.DictReader(out["csv"].open()))
    assert [(r["variant"], r["enrolled"], r["converted"]) for r in rows] == [
        ("treatment", "400", "64"), ("control", "400", "40")]
    data = json.loads(out["json"].read_text())
    assert data["skipped_lines"] == 1
    flow = data["flows"][0]
    assert flow["arms"]["control"]["conversion_rate"] == 0.1
    assert flow["conversion"]["diff"] == 0.06 and flow["power"]["underpowered"] is True
    assert out["png"].stat().st_size > 0


def test_report_on_a_missing_file_fails_cleanly(tmp_path, capsys):
    assert main(["report", "--input", str(tmp_path / "none.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_report_filters_one_flow(tmp_path, capsys):
    path = export(tmp_path, arm_stream("control", 3, 1))
    assert main(["report", "--input", str(path), "--flow", "other"]) == 0
    assert "no enrollments found for flow 'other'" in capsys.readouterr().err


# -- what lasts and the accounting ----------------------------------------------------------

def lasting_export(tmp_path, extra: bytes = b"", **options):
    from smsflow.demo.simulator import RepeatPurchaseSimulator

    sim = RepeatPurchaseSimulator(600, seed=2, **options)
    return sim, export(tmp_path, sim.outcomes(), extra=extra)


def test_report_prints_what_lasts_beside_the_funnel(tmp_path, capsys):
    sim, path = lasting_export(tmp_path, extra=b'{"type": "ordered", \n')
    assert main(["report", "--input", str(path)]) == 0
    captured = capsys.readouterr()
    text = " ".join(captured.out.split())
    assert "what lasts: repeat purchase and revenue 30/60/90 days after enrollment" in text
    for days in (30, 60, 90):
        assert re.search(rf"post_purchase {days} repeat rate plain [+-]\d+\.\d\d pp", text)
        assert re.search(rf"post_purchase {days} CUPED [+-]\d+\.\d\d pp", text)
    assert "revenue / enrolled, EUR" in text and "revenue / enrolled, USD" in text
    assert "customers enrolled more than once" in text
    assert re.search(r"line \d+: skipped: malformed JSON", captured.err)
    assert "accounting" not in text


def test_json_carries_every_section_with_exact_money(tmp_path, capsys):
    sim, path = lasting_export(tmp_path)
    out = tmp_path / "report.json"
    as_of = "2027-06-01T00:00:00Z"
    assert main(["report", "--input", str(path), "--json", str(out), "--horizons", "30,60",
                 "--as-of", as_of]) == 0
    data = json.loads(out.read_text())
    lasting = data["lasting"]
    assert lasting["as_of"] == as_of and lasting["horizons_days"] == [30, 60]
    [flow] = lasting["flows"]
    h30 = flow["horizons"][0]
    usd = h30["arms"]["treatment"]["revenue"]["USD"]
    assert isinstance(usd["total"], str) and "." in usd["total"]
    assert set(h30["revenue_lift"]) == {"EUR", "USD"}
    assert 0 < h30["revenue_lift"]["USD"]["variance_reduction"] < 1
    assert data["duplicates"] > 0 and data["accounting"]["ok"] is True


def test_accounting_prints_the_balance_and_strict_fails_on_flagged_items(tmp_path, capsys):
    sim, path = lasting_export(tmp_path)
    assert main(["report", "--input", str(path), "--accounting", "--strict"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "enrollments (by enrollment_id)" in text and "sends (by idempotency_key)" in text
    assert "balanced" in text and "what lasts" not in text
    lost = {"type": "suppressed", "customer_id": "x", "flow_id": "post_purchase",
            "enrollment_id": "en_x", "reason": "duplicate", "idempotency_key": "en_x:s1",
            "event_time": "2026-12-01T00:00:00Z", "processing_time": "2026-12-01T00:00:01Z",
            "details": {}}
    path.write_bytes(path.read_bytes() + orjson.dumps(lost) + b"\n")
    out = tmp_path / "accounting.json"
    assert main(["report", "--input", str(path), "--strict", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "flagged" in captured.out and "en_x:s1" in captured.out
    assert "duplicate_only" in captured.out and "(--strict)" in captured.err
    flags = json.loads(out.read_text())["accounting"]["flags"]
    assert [(f["key"], f["problem"]) for f in flags] == [("en_x:s1", "duplicate_only")]
    assert main(["report", "--input", str(path), "--accounting"]) == 0  # not strict: report only


def test_bad_report_options_are_usage_errors(tmp_path, capsys):
    path = export(tmp_path, arm_stream("control", 3, 1))
    for bad in (["--as-of", "last tuesday"], ["--horizons", "0,30"], ["--horizons", "x"]):
        with pytest.raises(SystemExit) as exc:
            main(["report", "--input", str(path), *bad])
        assert exc.value.code == 2
    assert "expected" in capsys.readouterr().err
