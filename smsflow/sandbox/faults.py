"""Fault injection for the sandbox: the failures the dispatcher must survive.

Random faults, drawn at ``rate`` per create call: ``429`` (code 20429, not processed),
``500`` (not created), ``timeout`` (created, but the answer is held past the client's
timeout: the ambiguous case) and ``30007`` (accepted, then undelivered as filtered).
``21610`` is not random: when listed, a phone that texted STOP (see ``/sandbox/inbound``)
is refused with 21610 until it texts START, as Twilio does.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

RANDOM_FAULTS = ("429", "500", "timeout", "30007")
KNOWN_FAULTS = RANDOM_FAULTS + ("21610",)


def parse_faults(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"429,500,timeout"`` -> ``("429", "500", "timeout")``; unknown names are an error."""
    items = [f.strip() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    unknown = [f for f in items if f not in KNOWN_FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(KNOWN_FAULTS)}")
    return tuple(items)


class FaultInjector:
    def __init__(self, rate: float = 0.0, faults: Iterable[str] = KNOWN_FAULTS,
                 seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.configure(rate, faults)

    def configure(self, rate: float, faults: Iterable[str]) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be within 0..1")
        self.rate = rate
        self.faults = parse_faults(faults)
        self._random = [f for f in self.faults if f in RANDOM_FAULTS]

    @property
    def stop_blocks(self) -> bool:
        """Whether phones that texted STOP get 21610."""
        return "21610" in self.faults

    def pick(self) -> str | None:
        """The fault for this request, or None."""
        if self.rate and self._random and self.rng.random() < self.rate:
            return self.rng.choice(self._random)
        return None
