from smsflow.report import build_report
from smsflow.report.chart import write_chart
from tests.unit.report.test_aggregate import arm_stream

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_chart_is_a_valid_png(tmp_path):
    records = arm_stream("treatment", 200, 32, clickers=50) + arm_stream("control", 60, 6)
    path = write_chart(build_report(records), tmp_path / "charts" / "lift.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_chart_handles_flows_without_holdout_and_empty_reports(tmp_path):
    no_control = build_report(arm_stream("treatment", 10, 2))
    assert write_chart(no_control, tmp_path / "a.png").read_bytes().startswith(PNG_MAGIC)
    empty = build_report([])
    assert write_chart(empty, tmp_path / "b.png").read_bytes().startswith(PNG_MAGIC)
