"""Rolling-window frequency caps ("at most N texts of a category per window").

Caps are counted over the phone's recent sends, not calendar days, so a cap can never
be dodged by sending just before and after midnight. When a cap is full the earliest
moment a slot frees is exact: the instant the oldest counted send leaves the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ON_CAP = ("defer", "drop")


@dataclass(frozen=True)
class CapRule:
    """At most ``max`` sends of ``category`` per rolling ``window`` seconds."""

    name: str
    category: str
    window: float
    max: int
    on_cap: str = "defer"


def free_at(rule: CapRule, send_times: Iterable[float], t: float) -> float:
    """Earliest instant >= ``t`` at which one more send fits under ``rule``.

    A send at ``x`` counts while ``t - window < x <= t``; it stops counting at
    ``x + window``. With ``n`` counted and room for ``max``, the ``n - max + 1``
    oldest must leave, so the answer is when the ``(n - max)``-th oldest leaves.
    """
    counted = sorted(x for x in send_times if t - rule.window < x <= t)
    if len(counted) < rule.max:
        return t
    return counted[len(counted) - rule.max] + rule.window
