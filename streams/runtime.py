"""What every agent needs at hand: settings, clock, topics, tables, the producer, the lanes.

Agents receive one :class:`Runtime` instead of importing globals, which keeps them thin
and lets tests run the same agents on in-memory tables and producer
(``streams/testing.py``) or a worker against a private broker with its own settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from smsflow.clock import Clock
from smsflow.streams import topics as topic_catalog
from smsflow.streams.batch import BatchContext
from smsflow.streams.lanes import Agent, Lane
from smsflow.streams.producer import ProducerLike
from smsflow.streams.settings import Settings
from smsflow.streams.store import TableStore
from smsflow.streams.tables import ALL, TableSpec, changelog_topic


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    producer: ProducerLike
    stores: dict[str, TableStore] = field(default_factory=dict)
    app: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    lanes: list[Lane] = field(default_factory=list)
    agents: dict[str, Agent] = field(default_factory=dict)
    on_processed: Any = None  # the consumer's mark_processed (set by the app)
    # consent status a phone batch has applied but not committed yet: the dispatcher reads
    # it before the committed ledger, so a STOP counts from the moment it is applied
    consent_holds: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topic_names = {role: self.settings.topic(role) for role in topic_catalog.all_roles()}
        self.table_specs: dict[str, TableSpec[Any]] = {spec.name: spec for spec in ALL}
        self.changelog_topics = {spec.name: changelog_topic(self.settings, spec.name) for spec in ALL}
        self._roles = {name: role for role, name in self.topic_names.items()}
        self._lane_by_topic: dict[str, Lane] = {}

    # -- agents ------------------------------------------------------------------------
    def add_agent(self, agent: Agent) -> Lane:
        lane = Lane(agent, self, self._processed)
        self.lanes.append(lane)
        self.agents[agent.name] = agent
        for role in agent.roles:
            self._lane_by_topic[self.topic_names[role]] = lane
        return lane

    async def _processed(self, offsets: Any) -> None:
        if self.on_processed is not None:
            await self.on_processed(offsets)

    def lane_for_topic(self, topic: str) -> Lane | None:
        return self._lane_by_topic.get(topic)

    def role_of(self, topic: str) -> str:
        return self._roles[topic]

    def source_topics(self) -> Iterable[str]:
        return self._lane_by_topic.keys()

    def dispatch_backlog(self) -> int:
        lane = self._lane_by_topic.get(self.topic_names["dispatch"])
        return lane.size if lane is not None else 0

    # -- batches -----------------------------------------------------------------------
    def new_context(self, agent: str) -> BatchContext:
        return BatchContext(agent=agent, stores=self.stores, topics=self.topic_names,
                            now=self.clock.now(), max_record_bytes=self.settings.max_record_bytes)

    @property
    def partitions(self) -> int:
        return self.settings.partitions
