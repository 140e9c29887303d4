"""Tables: what each holds (a typed record per key), who writes it, and its commit stage.

Each table is a Faust table on the ``smsflow-rocksdb://`` store (``streams/store.py``):
RocksDB partition databases, co-partitioned with the topics of the agent that writes it,
with a compacted changelog topic ``<app id>-<table>-changelog``. Every table has exactly
one writing agent, so a partition's changelog offsets only grow.

``stage`` orders the changelog writes of a batch (see ``streams/commit.py``): auxiliary
indexes (timers, wait lists) first, then the primary records that carry the "already
handled" marks. A crash between the two leaves at worst an orphan timer, which fires
into a state that no longer waits for it and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from smsflow.core.records.customers import CustomerState
from smsflow.core.records.products import ProductState, Waiting
from smsflow.core.records.receipts import ReceiptState
from smsflow.core.records.sends import DispatchRecord, DispatchRetry, PhoneState, PhoneTimer
from smsflow.core.records.timers import FlowTimer
from smsflow.streams.settings import Settings

T = TypeVar("T")
AUX, PRIMARY = 0, 1
MB = 1024 * 1024


@dataclass(frozen=True)
class TableSpec(Generic[T]):
    name: str
    value_type: Any          # the record type (or a union of record types)
    writer: str              # the one agent that writes it
    stage: int
    help: str


CUSTOMERS: TableSpec[CustomerState] = TableSpec(
    "customers", CustomerState, "customers", PRIMARY,
    "customer id -> profile, flow state and recent messageIds")
CUSTOMER_TIMERS: TableSpec[FlowTimer] = TableSpec(
    "customer_timers", FlowTimer, "customers", AUX,
    "'due_ms|len:customer|timer id' -> flow timer (ordered by due time)")
PRODUCTS: TableSpec[ProductState] = TableSpec(
    "products", ProductState, "products", PRIMARY, "product id -> latest stock facts")
WAITLISTS: TableSpec[Waiting] = TableSpec(
    "waitlists", Waiting, "products", AUX,
    "'len:product|customer' -> one customer waiting for a product")
PHONES: TableSpec[PhoneState] = TableSpec(
    "phones", PhoneState, "phones", PRIMARY,
    "E.164 -> consent ledger, recent sends (caps), waiting sends, handled keys")
PHONE_TIMERS: TableSpec[PhoneTimer] = TableSpec(
    "phone_timers", PhoneTimer, "phones", AUX,
    "'due_ms|len:phone|id' -> deferred send or parked decision")
DISPATCHED: TableSpec[DispatchRecord] = TableSpec(
    "dispatched", DispatchRecord, "dispatcher", PRIMARY,
    "idempotency key -> provider result (no duplicate texts)")
DISPATCH_TIMERS: TableSpec[DispatchRetry] = TableSpec(
    "dispatch_timers", DispatchRetry, "dispatcher", AUX,
    "'due_ms|len:phone|id' -> provider retry, reconciliation or resume")
RECEIPTS: TableSpec[ReceiptState] = TableSpec(
    "receipts", ReceiptState, "receipts", PRIMARY,
    "message sid -> furthest delivery status applied (replay-proof receipts)")

ALL: tuple[TableSpec[Any], ...] = (CUSTOMERS, CUSTOMER_TIMERS, PRODUCTS, WAITLISTS, PHONES,
                                   PHONE_TIMERS, DISPATCHED, DISPATCH_TIMERS, RECEIPTS)
TABLES = {spec.name: spec.help for spec in ALL}  # name -> what it holds (topic creation, docs)


def changelog_topic(settings: Settings, name: str) -> str:
    return f"{settings.app_id}-{name}-changelog"


def declare(app: Any, settings: Settings) -> dict[str, Any]:
    """The Faust table objects, by name. Values are raw bytes: agents read and write them
    through typed records (``streams/batch.py``), Faust only restores and assigns them."""
    tables = {}
    for spec in ALL:
        table = app.Table(spec.name, partitions=settings.partitions, store="smsflow-rocksdb://",
                          key_type=bytes, value_type=bytes, help=spec.help,
                          options={"write_buffer_size": settings.rocksdb_write_buffer_mb * MB,
                                   "max_write_buffer_number": 2,
                                   "target_file_size_base": 32 * MB})
        table.key_serializer = table.value_serializer = "raw"
        table._changelog_topic = None  # rebuilt on first use, with the raw codecs
        tables[spec.name] = table
    return tables
