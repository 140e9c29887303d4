"""The durable journal: append, read back in order, ack, and crashes at every step."""

import asyncio
import os

import pytest

from smsflow.webhooks.journal import FRAME, Entry, Journal, Position, SpoolFull


def entry(i: int, key: bytes | None = b"k") -> Entry:
    return Entry("delivery", key, b'{"n": %d}' % i)


async def fill(journal: Journal, n: int, start: int = 0) -> None:
    await asyncio.gather(*(journal.append(entry(i)) for i in range(start, start + n)))


def values(spooled) -> list[bytes]:
    return [s.entry.value for s in spooled]


async def test_entries_round_trip_with_null_and_binary_keys():
    for e in (Entry("inbound", b"+14155550100", b"{}"), Entry("dlq", None, b"x"),
              Entry("events", b"", b"\x00\xff"), Entry("outcomes", b"\xff" * 3, b"")):
        frame = e.encode()
        assert Entry.decode(frame[FRAME.size:]) == e


async def test_appends_are_read_back_in_order_and_counted(tmp_path):
    journal = Journal(tmp_path, max_bytes=1 << 20)
    for i in range(5):  # one by one: order of append
        await journal.append(entry(i))
    await fill(journal, 5, start=5)  # concurrent: one group commit, still in call order
    assert journal.records == 10
    assert journal.bytes == sum(len(entry(i).encode()) for i in range(10))
    batch = await journal.read(100)
    assert values(batch) == [b'{"n": %d}' % i for i in range(10)]
    await journal.close()


async def test_every_append_is_on_disk_before_it_returns(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    journal = Journal(tmp_path, max_bytes=1 << 20)
    before = len(synced)
    await journal.append(entry(1))
    assert len(synced) > before
    reopened = Journal(tmp_path / ".", max_bytes=1 << 20)  # a second reader sees it
    assert values(await reopened.read()) == [b'{"n": 1}']
    await journal.close()
    await reopened.close()


async def test_ack_removes_only_the_acked_prefix_and_survives_a_restart(tmp_path):
    journal = Journal(tmp_path, max_bytes=1 << 20)
    await fill(journal, 6)
    batch = await journal.read(4)
    await journal.ack(batch[1], 2, batch[0].size + batch[1].size)  # Kafka acked 0 and 1
    assert journal.records == 4
    assert values(await journal.read())[0] == b'{"n": 2}'
    await journal.close()

    reopened = Journal(tmp_path, max_bytes=1 << 20)
    assert reopened.records == 4
    assert values(await reopened.read()) == [b'{"n": %d}' % i for i in range(2, 6)]
    await reopened.close()


async def test_crash_between_kafka_ack_and_cursor_replays_the_batch(tmp_path):
    """At-least-once: published but not yet acked in the journal -> published again."""
    journal = Journal(tmp_path, max_bytes=1 << 20)
    await fill(journal, 3)
    first = await journal.read()
    # ... Kafka acks all three, then the process dies before journal.ack(): no close().
    reopened = Journal(tmp_path, max_bytes=1 << 20)
    assert values(await reopened.read()) == values(first)
    await journal.close()
    await reopened.close()


async def test_crash_in_the_middle_of_an_append_cuts_only_the_torn_frame(tmp_path):
    journal = Journal(tmp_path, max_bytes=1 << 20)
    await fill(journal, 3)
    await journal.close()
    segment = next(tmp_path.glob("*.seg"))
    whole = segment.stat().st_size
    torn = entry(99).encode()
    with open(segment, "ab") as f:  # the process died halfway through writing a frame
        f.write(torn[: len(torn) // 2])

    reopened = Journal(tmp_path, max_bytes=1 << 20)
    assert reopened.records == 3
    assert reopened.dropped_bytes == len(torn) // 2
    assert segment.stat().st_size == whole  # truncated to the last whole frame
    await reopened.append(entry(3))  # appends continue after the good data
    assert values(await reopened.read()) == [b'{"n": %d}' % i for i in range(4)]
    await reopened.close()


async def test_a_flipped_bit_in_the_tail_frame_is_caught_by_the_checksum(tmp_path):
    journal = Journal(tmp_path, max_bytes=1 << 20)
    await fill(journal, 2)
    await journal.close()
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0x01
    segment.write_bytes(bytes(data))
    reopened = Journal(tmp_path, max_bytes=1 << 20)
    assert values(await reopened.read()) == [b'{"n": 0}']
    await reopened.close()


async def test_crash_while_writing_the_cursor_keeps_the_old_cursor(tmp_path):
    journal = Journal(tmp_path, max_bytes=1 << 20)
    await fill(journal, 2)
    await journal.close()
    (tmp_path / "cursor.tmp").write_text("garbage that never got renamed")
    reopened = Journal(tmp_path, max_bytes=1 << 20)
    assert reopened.records == 2
    await reopened.close()


async def test_bounded_full_journal_refuses_and_frees_space_on_ack(tmp_path):
    size = len(entry(0).encode())
    journal = Journal(tmp_path, max_bytes=3 * size)
    await fill(journal, 3)
    with pytest.raises(SpoolFull):
        await journal.append(entry(3))
    assert journal.records == 3
    batch = await journal.read(1)
    await journal.ack(batch[0], 1, batch[0].size)
    await journal.append(entry(3))  # room again
    assert values(await journal.read()) == [b'{"n": %d}' % i for i in (1, 2, 3)]
    await journal.close()


async def test_segments_roll_and_acked_ones_are_deleted(tmp_path):
    size = len(entry(0).encode())
    journal = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=4 * size)
    for i in range(10):
        await journal.append(entry(i))
    assert len(list(tmp_path.glob("*.seg"))) >= 3
    batch = await journal.read(100)
    assert len(batch) == 10
    await journal.ack(batch[-1], 10, sum(s.size for s in batch))
    assert journal.empty and journal.bytes == 0
    assert len(list(tmp_path.glob("*.seg"))) <= 2
    await journal.append(entry(10))
    assert values(await journal.read()) == [b'{"n": 10}']
    await journal.close()

    reopened = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=4 * size)
    assert values(await reopened.read()) == [b'{"n": 10}']
    await reopened.close()


async def test_read_never_returns_appends_still_in_flight(tmp_path):
    journal = Journal(tmp_path, max_bytes=1 << 20)
    await journal.append(entry(0))
    pending = asyncio.ensure_future(journal.append(entry(1)))
    await asyncio.sleep(0)  # queued, maybe not written yet
    batch = await journal.read()
    assert values(batch)[0] == b'{"n": 0}'
    await pending
    await journal.settled()
    assert len(await journal.read()) == 2
    await journal.close()


async def test_a_failing_disk_fails_the_append_and_counts_nothing(tmp_path, monkeypatch):
    journal = Journal(tmp_path, max_bytes=1 << 20)

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        await journal.append(entry(0))
    assert journal.records == 0 and journal.bytes == 0
    monkeypatch.undo()
    await journal.append(entry(1))
    assert values(await journal.read()) == [b'{"n": 1}']
    await journal.close()


async def test_position_order_is_segment_then_offset():
    assert Position(1, 900) < Position(2, 0) < Position(2, 1)


async def test_journal_files_are_readable_by_their_owner_only(tmp_path):
    journal = Journal(tmp_path / "spool", max_bytes=1 << 20)
    await journal.append(Entry("inbound", b"+14155550100", b'{"Body": "STOP"}'))
    await journal.close()
    segment = next((tmp_path / "spool").glob("*.seg"))
    assert segment.stat().st_mode & 0o077 == 0
    assert (tmp_path / "spool").stat().st_mode & 0o077 == 0
