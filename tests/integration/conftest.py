"""Start the real Apache Kafka broker once per test run (or use SMSFLOW_TEST_BOOTSTRAP)."""

from __future__ import annotations

import os

import pytest

from smsflow.broker import Broker, free_port
from tests.integration.harness import Stack


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory):
    given = os.environ.get("SMSFLOW_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    port = free_port()
    controller = free_port()
    broker = Broker(port=port, controller_port=controller,
                    run_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def stack_factory(bootstrap, tmp_path):
    stacks: list[Stack] = []

    def make(**env) -> Stack:
        stack = Stack(bootstrap, tmp_path / f"stack{len(stacks)}", **env)
        stack.root.mkdir(parents=True, exist_ok=True)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def stack(stack_factory) -> Stack:
    return stack_factory()
