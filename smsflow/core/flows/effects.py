"""What one engine call asks its caller to do: new state, timers, send commands, outcomes.

The engine never touches Kafka or tables; the Faust agent applies an :class:`Effects`
(write ``state``, add/delete timers, produce ``sends`` and ``outcomes``). Everything in
here is plain JSON-serialisable data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

WAIT = "wait"        # a wait step's duration is over
TIMEOUT = "timeout"  # a wait_until step's timeout is over


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer the engine asked for; the caller stores it and hands it back when due."""

    timer_id: str       # f"{enrollment_id}:{step_id}:{kind}", unique (steps never repeat)
    due: float          # epoch seconds (clock time)
    enrollment_id: str
    flow_id: str
    step_id: str
    kind: str           # WAIT | TIMEOUT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timer:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass
class Effects:
    state: dict[str, Any]
    timers_set: list[Timer] = field(default_factory=list)
    timers_cancel: list[str] = field(default_factory=list)
    sends: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def set_timer(self, timer: Timer) -> None:
        self.timers_set.append(timer)

    def cancel_timer(self, timer_id: str) -> None:
        """Cancel a stored timer, or drop one set earlier in this same call."""
        kept = [t for t in self.timers_set if t.timer_id != timer_id]
        if len(kept) == len(self.timers_set):
            self.timers_cancel.append(timer_id)
        self.timers_set = kept


OUTCOME_FIELDS = ("type", "customer_id", "flow_id", "enrollment_id", "step_id", "variant", "reason",
                  "message_sid", "segments", "encoding", "error_code", "revenue", "currency",
                  "phone_masked", "idempotency_key", "event_time", "processing_time", "details")


def outcome(type_: str, **values: Any) -> dict[str, Any]:
    """An outcome record with every field of ``schemas/outcome.schema.json`` (null when n/a)."""
    record = {name: values.pop(name, None) for name in OUTCOME_FIELDS[1:]}
    if values:
        raise TypeError(f"unknown outcome fields: {sorted(values)}")
    record["details"] = record["details"] or {}
    return {"type": type_, **record}

