"""The demo runs copies of the shipped flows (smsflow/demo/flows/README.md says why); they
must stay the shipped flows except for the overrides that README documents."""

from pathlib import Path

import yaml

from smsflow.core.flows.loader import load_dir
from smsflow.demo.run import DEMO_FLOWS

SHIPPED = Path(__file__).resolve().parents[3] / "flows"
# file -> (dotted path, demo value): the only differences the README allows
OVERRIDES = {"abandoned_checkout.yaml": [("holdout", 0.5), ("steps.wait_social_proof.wait", {"duration": "4h"})]}


def _set(doc: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = (next(s for s in node if s.get("id") == part) if isinstance(node, list)
                else node[part])
    node[last] = value


def test_demo_copies_are_the_shipped_flows_but_for_the_documented_overrides():
    shipped = sorted(p.name for p in SHIPPED.glob("*.yaml"))
    assert sorted(p.name for p in DEMO_FLOWS.glob("*.yaml")) == shipped
    for name in shipped:
        expected = yaml.safe_load((SHIPPED / name).read_text())
        for dotted, value in OVERRIDES.get(name, []):
            _set(expected, dotted, value)
        assert yaml.safe_load((DEMO_FLOWS / name).read_text()) == expected, name


def test_demo_flows_load_without_errors():
    result = load_dir(DEMO_FLOWS)
    assert not result.errors, result.errors
    assert len(result.flows) == len(list(SHIPPED.glob("*.yaml")))
