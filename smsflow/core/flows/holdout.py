"""Deterministic bucketing for holdouts and A/B splits.

The same customer always lands in the same bucket of a flow, on every worker and after
every restart, without storing anything: the bucket is a hash, not a coin flip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

CONTROL = "control"
TREATMENT = "treatment"


def bucket(*parts: str) -> float:
    """A uniform number in [0, 1) from sha256 of the parts (joined with an unlikely separator)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(flow_id: str, customer_id: str, fraction: float) -> str:
    """``"control"`` when the customer's bucket for this flow is below ``fraction``."""
    return CONTROL if bucket(flow_id, customer_id) < fraction else TREATMENT


def pick_weighted(u: float, weights: Sequence[float]) -> int:
    """Index chosen by ``u`` in [0, 1) over cumulative ``weights`` (split variants)."""
    total = float(sum(weights))
    edge = 0.0
    for index, weight in enumerate(weights):
        edge += weight / total
        if u < edge:
            return index
    return len(weights) - 1
