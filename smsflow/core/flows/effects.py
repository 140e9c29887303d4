"""What one engine call asks its caller to do: new state, timers, send commands, outcomes.

The engine never touches Kafka or tables; the agent applies an :class:`Effects` (write
``state``, store and delete timers by their keys, produce ``sends``, ``links`` and
``outcomes``). Everything in here is a typed record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smsflow.core.records.customers import FlowState
from smsflow.core.records.links import MintedLink
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.sends import SendCommand
from smsflow.core.records.timers import FlowTimer

WAIT = "wait"        # a wait step's duration is over
TIMEOUT = "timeout"  # a wait_until step's timeout is over


@dataclass
class Effects:
    state: FlowState
    timers_set: dict[str, FlowTimer] = field(default_factory=dict)  # store key -> timer
    timers_cancel: list[str] = field(default_factory=list)          # store keys
    sends: list[SendCommand] = field(default_factory=list)
    links: list[MintedLink] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def set_timer(self, key: str, timer: FlowTimer) -> None:
        self.timers_set[key] = timer

    def cancel_timer(self, key: str) -> None:
        """Cancel a stored timer, or drop one set earlier in this same call."""
        if self.timers_set.pop(key, None) is None:
            self.timers_cancel.append(key)
