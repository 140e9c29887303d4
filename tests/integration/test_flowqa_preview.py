"""``smsflow flows preview`` on every shipped and example flow, as an installed command:
each send step renders, is counted, priced and judged by the gate, by day and by night."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from smsflow.core.flows import load_dir
from smsflow.core.records.base import decode
from smsflow.flowqa.preview import FlowPreview

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FLOW_FILES = sorted([*(REPO / "flows").glob("*.yaml"), *(REPO / "examples" / "flows").glob("*.yaml")])
NOON_LA, NIGHT_LA = "2026-11-24T12:00:00-08:00", "2026-11-24T23:30:00-08:00"


def preview(path: Path, at: str, *extra: str) -> tuple[subprocess.CompletedProcess, FlowPreview]:
    result = subprocess.run([sys.executable, "-m", "smsflow.cli", "flows", "preview", str(path),
                             "--at", at, "--policy", str(REPO / "deploy" / "policy.yaml"),
                             "--json", *extra], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result, decode(result.stdout, FlowPreview)


def in_process(path: Path, at: str) -> FlowPreview:
    from smsflow.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["flows", "preview", str(path), "--at", at, "--policy",
                     str(REPO / "deploy" / "policy.yaml"), "--json"]) == 0
    return decode(out.getvalue(), FlowPreview)


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_send_step_of_every_shipped_flow(path):
    [flow] = [f for f in load_dir(path.parent).flows if f.source == str(path)]
    sends = [s.id for s in flow.steps if s.kind == "send"]
    _, noon = preview(path, NOON_LA)
    assert [s.step_id for s in noon.steps] == sends and noon.flow_id == flow.id
    for step in noon.steps:
        assert step.error is None and step.body and step.segments >= 1, step
        assert step.encoding in ("GSM-7", "UCS-2")
        assert set(step.cost) == {"long_code", "toll_free", "short_code"}
        assert step.verdict in ("send", "defer", "suppress", "drop"), step
        if step.link_short:
            assert step.link_short in step.body
            assert f"utm_campaign={flow.id}" in step.link_target
            assert f"utm_content={step.step_id}" in step.link_target
        if step.channel == "mms":
            assert step.media_urls and all(u.startswith("https://") for u in step.media_urls)
    night = in_process(path, NIGHT_LA)
    first = min(night.steps, key=lambda s: s.at)
    if flow.category == "marketing" and first.after_trigger in ("0s", "10m", "30m", "1h"):
        # minutes after 23:30 in Los Angeles: quiet hours (or the flow's window) defer it
        assert first.verdict == "defer" and first.reason in ("quiet_hours", "send_window")
    if flow.category == "transactional":
        assert first.verdict == "send"  # transactional texts skip quiet hours


def test_the_example_cart_reaches_only_discount_sensitive_customers(tmp_path):
    from smsflow.core.records.base import encode
    from smsflow.core.records.customers import Profile

    path = REPO / "examples" / "flows" / "abandoned_checkout.yaml"
    _, sample = preview(path, NOON_LA)  # the sample: half of her orders used a code
    assert {s.step_id: s.reached for s in sample.steps} == {"reminder": True, "incentive": True}
    full_price = tmp_path / "p.json"
    full_price.write_bytes(encode(Profile(
        customer_id="c_full", traits={"first_name": "Flo"}, phone="+14155550190", country="US",
        timezone="America/Los_Angeles", sms_consent_status="subscribed", order_count=3,
        total_spent=450.0, aov=150.0, purchase_status="repeat", discount_share=0.0,
        avg_margin=0.6)))
    _, flo = preview(path, NOON_LA, "--profile", str(full_price))
    assert {s.step_id: s.reached for s in flo.steps} == {"reminder": True, "incentive": False}
    assert "discount_sensitive" in " ".join(flo.path) or flo.path[-1] == "end (completed)"
    # a high-AOV, high-margin customer's cart goes first: 50 + 15 (AOV) + 15 (margin)
    assert flo.steps[0].priority == 80 and sample.steps[0].priority == 65
