"""``smsflow report`` end to end on a JSON-lines export, plus the CSV and JSON writers."""

import csv
import json

import orjson

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
