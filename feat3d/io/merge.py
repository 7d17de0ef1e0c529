"""Sharding a run over machines and merging the HDF5 outputs of the shards into one.

``shard_of`` assigns every video key to one of ``N`` shards the same way on every machine
and Python version; each shard writes its own HDF5 file; ``merge_outputs`` checks the shards
were made with the same options and copies their complete groups into one file, written to
a temporary file and renamed into place like every HDF5 output (a kill never leaves a
half-merged file).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from .h5store import (
    ERRORS_GROUP,
    MIN_FREE_BYTES,
    RESUME_CHECKED,
    OutputError,
    arrays_equal,
    check_free_space,
    check_writable,
    commit_file,
    consolidate_journal,
    h5_value,
    jsonable,
    open_journal,
    pending_records,
    remove_temporaries,
    scan_groups,
    write_error_record,
)


def shard_of(key: str, count: int) -> int:
    """The shard (``0 … count-1``) a video key belongs to: the first 8 bytes of the key's
    SHA-1 (UTF-8) as a big-endian integer, modulo ``count`` — stable across runs, machines and
    Python versions."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with ``0 ≤ I < N``.

    Raises:
        ValueError: Not of that form.
    """
    parts = text.strip().split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        raise ValueError(
            f"shard {text!r} is not I/N (two integers, e.g. 0/4 for the first of four)"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: needs 0 <= I < N, e.g. 0/4 … 3/4")
    return index, count


@dataclass
class PartCounts:
    """What one input contributed to a merge."""

    path: Path
    videos: int = 0
    duplicates: int = 0
    errors: int = 0


@dataclass
class MergeReport:
    """Outcome of :func:`merge_outputs`.

    Attributes:
        output: The merged file.
        videos: Complete videos in it.
        duplicates: Videos found in more than one input with identical content (kept once).
        errors: Error records in it (videos that failed in every input that had them).
        parts: Per input: videos copied from it, duplicates skipped, error records taken.
    """

    output: Path
    videos: int = 0
    duplicates: int = 0
    errors: int = 0
    parts: list[PartCounts] = field(default_factory=list)


def _read_attrs(path: Path) -> dict[str, Any]:
    try:
        with h5py.File(path, "r") as handle:
            return dict(handle.attrs)
    except OSError as error:
        raise OutputError(f"{path}: cannot open as HDF5 ({error})") from error


def _check_parts_agree(parts: Sequence[Path], attrs: Sequence[dict[str, Any]]) -> None:
    first = attrs[0]
    for path, other in zip(parts[1:], attrs[1:], strict=True):
        for name in RESUME_CHECKED:
            before, now = jsonable(first.get(name)), jsonable(other.get(name))
            if before != now:
                raise OutputError(
                    f"{path}: made with {name}={now!r}, but {parts[0]} with {name}={before!r}; "
                    "only outputs of the same options can be merged"
                )


def _groups_equal(a: h5py.Group, b: h5py.Group) -> bool:
    if set(a) != set(b):
        return False
    return all(
        isinstance(a[name], h5py.Dataset)
        and isinstance(b[name], h5py.Dataset)
        and arrays_equal(a[name], b[name])
        for name in a
    )


def merge_outputs(
    output: str | os.PathLike[str],
    parts: Sequence[str | os.PathLike[str]],
    *,
    overwrite: bool = False,
) -> MergeReport:
    """Merge HDF5 outputs of ``feat3d extract`` (e.g. the shards of one run) into ``output``.

    Journals left beside the inputs by killed runs are consolidated first. Every complete
    group is copied (datasets, chunking, attributes as they are); a key in several inputs
    is kept once when its datasets are identical and refused otherwise; an error record is
    kept only for a key no input holds complete. File attributes are the first input's.

    Args:
        output: The merged HDF5 file, written via a temporary file and an atomic rename.
        parts: Input HDF5 files, made with the same options (``RESUME_CHECKED``).
        overwrite: Replace an existing ``output``.

    Returns:
        A :class:`MergeReport`.

    Raises:
        OutputError: No inputs, a missing or unreadable input, inputs made with different
            options, a key with different content in two inputs, an existing ``output``
            without ``overwrite``, or too little disk space.

    Example:
        >>> report = merge_outputs("feats.h5", ["feats.0.h5", "feats.1.h5"])
        >>> report.videos, report.duplicates
        (1200, 0)
    """
    output = Path(output)
    part_paths = [Path(part) for part in parts]
    if not part_paths:
        raise OutputError(f"{output}: nothing to merge (no input files given)")
    for part in part_paths:
        if part.resolve() == output.resolve():
            raise OutputError(f"{output}: is also an input; write the merge to another file")
        if not part.exists() and not (part.with_name(part.name + ".journal")).exists():
            raise OutputError(f"{part}: no such file")
    if not overwrite and (output.exists() or pending_records(output)):
        raise OutputError(f"{output}: exists; pass --overwrite to replace it")
    check_writable(output)
    for part in part_paths:
        consolidate_journal(part)
    attrs = [_read_attrs(part) for part in part_paths]
    _check_parts_agree(part_paths, attrs)
    needed = sum(part.stat().st_size for part in part_paths) + MIN_FREE_BYTES
    check_free_space(output, needed)

    # Holding the output's journal lock keeps a concurrent extract or merge off this file.
    journal = open_journal(output, sync=True)
    temporary = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    try:
        remove_temporaries(output)
        report = _merge_into(temporary, part_paths, attrs[0], output)
        commit_file(temporary, output)
        journal.remove()
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"{output}: merge failed ({error})") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        journal.close()
    return report


def _merge_into(
    temporary: Path, parts: Sequence[Path], attrs: dict[str, Any], output: Path
) -> MergeReport:
    report = MergeReport(output=output)
    origin: dict[str, Path] = {}
    failures: dict[str, tuple[str, str, PartCounts]] = {}
    with h5py.File(temporary, "w") as merged:
        for name, value in attrs.items():
            merged.attrs[name] = h5_value(jsonable(value))
        for part in parts:
            counts = PartCounts(part)
            report.parts.append(counts)
            with h5py.File(part, "r") as source:
                complete, _ = scan_groups(source)
                for key in sorted(complete):
                    if key in origin:
                        if not _groups_equal(merged[key], source[key]):
                            raise OutputError(
                                f"{part}: video {key} differs from the one in {origin[key]}; "
                                "these outputs can't be merged"
                            )
                        counts.duplicates += 1
                        report.duplicates += 1
                        continue
                    parent, _, name = key.rpartition("/")
                    target = merged.require_group(parent) if parent else merged
                    source.copy(source[key], target, name=name)
                    origin[key] = part
                    counts.videos += 1
                for record in source.get(ERRORS_GROUP, {}).values():
                    key = str(record.attrs["video"])
                    if key not in failures:
                        failures[key] = (
                            str(record.attrs["source"]),
                            str(record.attrs["message"]),
                            counts,
                        )
        for key, (source_path, message, counts) in failures.items():
            if key in origin:
                continue  # a success anywhere wins over an error
            write_error_record(merged, key, source_path, message)
            counts.errors += 1
            report.errors += 1
    report.videos = len(origin)
    return report
