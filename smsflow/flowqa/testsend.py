"""``smsflow flows test-send``: one step of a flow, sent for real to a QA phone, as a test.

The step is rendered exactly as the engine renders it (see :mod:`smsflow.flowqa.preview`)
for the sample customer or ``--profile``, then sent through the configured provider (the
real Twilio with credentials, else the sandbox) with the official ``twilio`` package.

What makes it a test, and keeps it out of everything a customer's texts touch:

* it never goes through the engine: no enrollment, no send command, no gate, so it never
  counts against a frequency cap or a state cap and never enters a customer's history
  (quiet hours are not applied either: the person asking is the one holding the phone);
* its record is a ``test_sent`` outcome without a customer id, which reports and the
  accounting never count; its idempotency key starts with ``test:``;
* no status callback is asked for, so no delivery receipt flows back into the outcomes;
  the command polls the message's status itself and prints it;
* its tracked link is minted like a real one (the link works on the device) but names no
  customer, enrollment or send, so a click records a ``clicked`` outcome that belongs to
  nobody: no profile changes, no report or accounting counts it.

It is refused to a phone whose consent ledger (the ``phones`` table, read from its
changelog as ``smsflow consent`` reads it) says it opted out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from smsflow.clock import iso
from smsflow.core import phones as core_phones
from smsflow.core import segments as core_segments
from smsflow.core.flows.engine import FlowEngine
from smsflow.core.flows.model import Flow, SendStep
from smsflow.core.links import code_of
from smsflow.core.records.base import encode
from smsflow.core.records.links import MintedLink
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.sends import PhoneState, SendCommand
from smsflow.flowqa.preview import _enrollment
from smsflow.flowqa.sample import Customer
from smsflow.core.records.events import IngestedEvent
from smsflow.streams.settings import Settings

TERMINAL = ("delivered", "undelivered", "failed", "canceled", "read")


class Refused(Exception):
    """The test send must not happen (opted-out phone, not a send step, ...)."""


@dataclass
class QASend:
    command: SendCommand
    sender: str
    sender_type: str
    encoding: str
    segments: int
    consent: str


def ledger_state(settings: Settings, phone: str, timeout: float = 30.0) -> PhoneState | None:
    """The phone's record in the ``phones`` table (its compacted changelog), or None."""
    from confluent_kafka.admin import AdminClient

    from smsflow.kafka_io import client_config, iter_topic

    topic = f"{settings.app_id}-phones-changelog"
    found = AdminClient(client_config(settings)).list_topics(timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        raise LookupError(f"topic {topic!r} not found (is SMSFLOW_APP_ID right, and has a "
                          "worker run on this broker?)")
    last: bytes | None = None
    wanted = phone.encode()
    for key, value in iter_topic(topic, settings, timeout):
        if key == wanted:
            last = value  # tombstones (None) clear it
    return msgspec.json.decode(last, type=PhoneState) if last is not None else None


def prepare(flow: Flow, step_id: str, to: str, customer: Customer, trigger: IngestedEvent,
            state: PhoneState | None, settings: Settings, policy: Any,
            sender_number: str | None = None) -> QASend:
    """The message to send, or :class:`Refused`."""
    step = flow.step(step_id)
    if not isinstance(step, SendStep):
        sends = ", ".join(s.id for s in flow.steps if isinstance(s, SendStep))
        raise Refused(f"{flow.id} has no send step {step_id!r} (send steps: {sends})")
    try:
        info = core_phones.normalize(to, None, settings.default_region)
    except core_phones.InvalidPhone as exc:
        raise Refused(f"{to!r} is not a textable phone ({exc.reason})") from None
    ledger = state.ledger if state is not None else None
    if ledger is not None and ledger.status == "unsubscribed":
        when = iso(ledger.timestamp) or "?"
        how = ledger.keyword or ledger.source or "opt-out"
        raise Refused(f"{info.e164} has opted out ({how} at {when}): no test texts to it")
    profile = msgspec.structs.replace(customer.profile, phone=info.e164, phone_info=info,
                                      country=info.country)
    engine = FlowEngine([flow], link_base_url=settings.public_url,
                        link_secret=settings.link_secret)
    now = time.time()
    run, enrollment = _enrollment(engine, flow, profile, trigger, now)
    key = f"test:{uuid.uuid4().hex[:12]}:{flow.id}:{step.id}"
    command = run._command(flow, enrollment, step, info.e164, key)  # RenderError: caller
    problem = core_segments.check_message(command.body, command.media_urls)
    if problem:
        raise Refused(f"the gate would refuse this message: {problem}")
    if sender_number:
        sender = next((s for s in policy.senders if s.number == sender_number), None)
        if sender is None:
            raise Refused(f"--from {sender_number} is not a sender of the policy")
    else:
        sender = policy.sender_for(flow.category, info.country, info.e164)
        if sender is None:
            raise Refused(f"no sender of the policy serves {flow.category} texts to "
                          f"{info.country}")
    analysis = core_segments.analyze(command.body)
    return QASend(command, sender.number, sender.type, analysis.encoding, analysis.segments,
                    ledger.status if ledger is not None else "never (no record)")


def link_record(test: QASend) -> MintedLink | None:
    """The minted link, naming no customer (a click changes no profile)."""
    c = test.command
    if c.link is None:
        return None
    # no customer, no enrollment, no idempotency key: the click's outcome belongs to no
    # customer (reports skip it) and to no send (the accounting does not look for one)
    return MintedLink(target=c.link.target, short=c.link.short, customer_id="", flow_id=c.flow_id,
                      step_id=c.step_id, enrollment_id=None, idempotency_key=None)


def outcome_record(test: QASend, sid: str, status: str) -> Outcome:
    c = test.command
    now = iso(time.time(), "milliseconds")
    return Outcome(type="test_sent", customer_id=None, flow_id=c.flow_id, step_id=c.step_id,
                   idempotency_key=c.idempotency_key, message_sid=sid, segments=test.segments,
                   encoding=test.encoding,  # type: ignore[arg-type]
                   phone_masked=core_phones.mask(c.phone), event_time=now,
                   processing_time=now or "",
                   details={"test": True, "sender": test.sender, "status": status,
                            "channel": c.channel})


async def send(test: QASend, settings: Settings, wait: float) -> tuple[Any, str]:
    """Send once (no status callback), then poll the status for up to ``wait`` seconds."""
    from smsflow.twilio_client import TwilioSender

    c = test.command
    async with TwilioSender(settings.twilio_account_sid, settings.twilio_auth_token,
                            base_url=settings.twilio_base_url, timeout=15.0) as sender:
        result = await sender.send(c.phone, test.sender, c.body, c.media_urls,
                                   idempotency_key=c.idempotency_key)
        status = result.status
        if result.sid is None:
            return result, status
        deadline = time.monotonic() + wait
        while status not in TERMINAL and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            try:
                status = (await sender.fetch(result.sid)).status
            except Exception:  # noqa: BLE001 - the send happened; only the look-up failed
                break
        return result, status


def publish(settings: Settings, test: QASend, outcome: Outcome | None,
            link: MintedLink | None) -> None:
    """The link (before the send, so the first click finds it) or the outcome."""
    from smsflow.commands.produce import producer

    prod = producer(settings)
    if link is not None:
        prod.produce(settings.topic("links"), key=code_of(link.short).encode(), value=encode(link))
    if outcome is not None:
        prod.produce(settings.topic("outcomes"), key=None, value=encode(outcome))
    if prod.flush(30) != 0:
        raise RuntimeError("Kafka did not acknowledge the test record in 30 s")
