"""The append-only journal: round trip, torn-record truncation, failed writes, locking."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from feat3d.io import journal as journal_module
from feat3d.io.journal import ArrayStream, Journal, JournalError, read_entries


def arrays_for(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((3 + seed % 3, 5)).astype(np.float32),
        "segments": rng.integers(0, 1000, (3, 2)).astype(np.int64),
        "scalar": np.asarray(rng.random()),
        "empty": np.zeros((0, 4), np.float16),
    }


def fill(path, count: int) -> list[dict[str, np.ndarray]]:
    journal = Journal(path, sync=False)
    written = []
    for i in range(count):
        arrays = arrays_for(i)
        journal.append(f"dir/v{i}.mp4", "video", {"fps": 25.0 + i, "name": f"é{i}"}, arrays)
        written.append(arrays)
    journal.close()
    return written


def assert_same(record, arrays: dict[str, np.ndarray]) -> None:
    assert set(record.arrays) == set(arrays)
    for name, array in arrays.items():
        stored = record.arrays[name]
        assert stored.dtype == array.dtype and stored.shape == array.shape, name
        np.testing.assert_array_equal(stored, array)


def test_records_round_trip_with_their_arrays_and_attributes(tmp_path):
    path = tmp_path / "out.h5.journal"
    written = fill(path, 4)
    journal = Journal(path)
    records = list(journal.records())
    journal.close()
    assert [r.key for r in records] == [f"dir/v{i}.mp4" for i in range(4)]
    assert records[2].kind == "video" and records[2].attrs == {"fps": 27.0, "name": "é2"}
    for record, arrays in zip(records, written, strict=True):
        assert_same(record, arrays)


def test_a_torn_last_record_is_cut_off_at_every_possible_length(tmp_path):
    path = tmp_path / "j"
    written = fill(path, 3)
    entries = read_entries(path)
    full = path.read_bytes()
    second_end, last_end = entries[1].end, entries[2].end
    assert last_end == len(full)
    for cut in range(second_end, last_end, 37):  # every 37th byte of the last record
        path.write_bytes(full[:cut])
        assert len(read_entries(path)) == 2  # a read-only scan stops before the torn record
        assert path.stat().st_size == cut  # ... and leaves the file alone
        journal = Journal(path)
        assert [e.key for e in journal.entries] == ["dir/v0.mp4", "dir/v1.mp4"]
        assert journal.torn_bytes == cut - second_end
        journal.append("next", "error", {"message": "m"})
        journal.close()
        reopened = Journal(path)
        records = list(reopened.records())
        reopened.close()
        assert [r.key for r in records] == ["dir/v0.mp4", "dir/v1.mp4", "next"]
        assert_same(records[1], written[1])


def test_a_corrupted_byte_in_the_last_record_fails_its_checksum(tmp_path):
    path = tmp_path / "j"
    fill(path, 3)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    journal = Journal(path)
    assert len(journal.entries) == 2 and journal.torn_bytes > 0
    journal.close()


def test_a_journal_torn_at_creation_starts_empty(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(journal_module.FILE_MAGIC[:3])
    journal = Journal(path)
    assert journal.entries == []
    journal.append("a", "video", {}, {"x": np.arange(3)})
    journal.close()
    assert [e.key for e in read_entries(path)] == ["a"]


def test_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"hello world, not a journal")
    with pytest.raises(JournalError, match="not a feat3d journal"):
        Journal(path)
    assert path.read_bytes() == b"hello world, not a journal"


def test_a_failed_write_is_cut_back_and_earlier_records_stay(tmp_path, monkeypatch):
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append("a", "video", {}, arrays_for(0))
    real_write = journal_module._write_fully
    calls = []

    def disk_fills_up(fd, data):
        calls.append(len(data))
        if len(calls) == 2:  # the frame header went out, the first array does not fit
            real_write(fd, bytes(data)[:5])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data)

    monkeypatch.setattr(journal_module, "_write_fully", disk_fills_up)
    with pytest.raises(OSError, match="No space"):
        journal.append("b", "video", {}, arrays_for(1))
    monkeypatch.setattr(journal_module, "_write_fully", real_write)
    assert [e.key for e in journal.entries] == ["a"]
    journal.append("c", "video", {}, arrays_for(2))
    journal.close()
    assert [e.key for e in read_entries(path)] == ["a", "c"]
    assert Journal(path).torn_bytes == 0


def test_streamed_arrays_are_written_piece_by_piece(tmp_path):
    path = tmp_path / "j"
    whole = np.arange(7 * 2 * 3, dtype=np.uint8).reshape(7, 2, 3)
    journal = Journal(path)
    pieces = (whole[i : i + 3] for i in range(0, 7, 3))
    journal.append("a", "video", {}, {"flow": ArrayStream((7, 2, 3), np.dtype(np.uint8), pieces)})
    with pytest.raises(ValueError, match="bytes"):  # a stream shorter than its shape
        journal.append("b", "video", {}, {"flow": ArrayStream((7, 2, 3), np.uint8, [whole[:2]])})
    (record,) = journal.records()
    np.testing.assert_array_equal(record.arrays["flow"], whole)
    journal.close()
    assert [e.key for e in read_entries(path)] == ["a"]


def test_a_second_writer_is_refused_while_the_first_holds_it(tmp_path):
    path = tmp_path / "j"
    first = Journal(path)
    with pytest.raises(JournalError, match="in use"):
        Journal(path)
    first.remove()
    assert not path.exists()
    Journal(path).close()
