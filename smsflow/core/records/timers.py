"""Timer records: the engine's timers and the ticker's fire notices.

A timer is stored under a key ordered by due time (``smsflow.core.timers``); the ticker
scans due keys and sends a :class:`TimerFire` to the owning agent's timers topic, on the
partition of the store it read; the agent re-reads the timer and acts only if it is
still stored, so a duplicate fire is harmless.
"""

from __future__ import annotations

from typing import Literal

from smsflow.core.records.base import Record


class FlowTimer(Record, kw_only=True):
    """A flow wait (``wait``) or wait-until timeout (``timeout``) of one enrollment step."""

    timer_id: str       # f"{enrollment_id}:{step_id}:{kind}" (steps never repeat)
    due: float          # epoch seconds, clock time
    enrollment_id: str
    flow_id: str
    step_id: str
    kind: Literal["wait", "timeout"]


class TimerFire(Record, kw_only=True):
    """Topics ``customer-timers``, ``phone-timers``, ``dispatch-timers``: a due timer's key."""

    timer_key: str
    emitted_at: float
