"""Tables (RocksDB through rocksdict), co-partitioned with the topics that write them.

Block cache and write buffers are sized for many partitions per worker (Faust's default
is a 2 GiB cache per partition DB). No ``ttl``: with rocksdict it silently deletes data
that the changelog still holds, so expiry is always an explicit delete.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsflow.streams.settings import Settings

# name -> what it holds. Customer side (key customer id) and phone side (key E.164).
TABLES = {
    "profiles": "customer id -> computed profile, recent messageIds (dedupe)",
    "flowstate": "customer id -> flow enrollments and re-entry history",
    "customer_timers": "'due_ms|customer|timer' -> timer (ordered due-time index)",
    "products": "product id -> stock state and waiting customers",
    "consent": "E.164 -> consent ledger with history",
    "phone_state": "E.164 -> recent sends (caps), seen idempotency keys",
    "phone_timers": "'due_ms|phone|timer' -> deferred send",
    "dispatched": "idempotency key -> provider result (no duplicate texts)",
}


def rocksdb_options(settings: Settings) -> dict:
    mb = 1024 * 1024
    return {
        "driver": "rocksdict",
        "block_cache_size": settings.rocksdb_cache_mb * mb,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * mb,
        "max_write_buffer_number": 2,
        "target_file_size_base": 32 * mb,
    }


@dataclass
class TableSet:
    by_name: dict

    def __getitem__(self, name: str):
        return self.by_name[name]


def declare(app, settings: Settings) -> TableSet:
    options = rocksdb_options(settings)
    tables = {}
    for name in TABLES:
        tables[name] = app.Table(
            name,
            partitions=settings.partitions,
            store="rocksdb://",
            options=options,
            help=TABLES[name],
        )
        # Faust derives codecs from key/value types (json by default); ours are faster
        # and keep RocksDB key order equal to string order.
        tables[name].key_serializer = "str"
        tables[name].value_serializer = "orjson"
        # The changelog topic object was built in the constructor with the json codecs:
        # drop it so it is rebuilt with ours (recovery decodes keys with it).
        tables[name]._changelog_topic = None
    return TableSet(tables)
