"""Sharding a run over machines and merging the HDF5 outputs of the shards into one.

``shard_of`` assigns every video key to one of ``N`` shards the same way on every machine
and Python version; each shard writes its own HDF5 file; ``merge_outputs`` checks the shards
were made with the same options and copies their complete groups into one file, written to
a temporary file and renamed into place like every HDF5 output (a kill never leaves a
half-merged file).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from .h5store import (
    ADDED_DEFAULTS,
    MIN_FREE_BYTES,
    RESUME_CHECKED,
    OutputError,
    arrays_equal,
    check_free_space,
    check_writable,
    commit_file,
    consolidate_journal,
    h5_value,
    journal_path,
    open_journal,
    pending_records,
    remove_temporaries,
    write_error_record,
)
from .reader import H5Reader, ReadError, VideoFailure, open_output


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


def _open_part(path: Path) -> H5Reader:
    try:
        output = open_output(path)
    except ReadError as error:
        raise OutputError(str(error)) from None
    if not isinstance(output, H5Reader):
        output.close()
        raise OutputError(f"{path}: not an HDF5 output; only HDF5 outputs can be merged")
    return output


def _check_parts_agree(parts: Sequence[H5Reader]) -> None:
    first = parts[0]
    for other in parts[1:]:
        for name in RESUME_CHECKED:
            default = ADDED_DEFAULTS.get(name)
            before, now = first.options.get(name, default), other.options.get(name, default)
            if before != now:
                raise OutputError(
                    f"{other.path}: made with {name}={now!r}, but {first.path} with "
                    f"{name}={before!r}; only outputs of the same options can be merged"
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
        if not part.exists() and not journal_path(part).exists():
            raise OutputError(f"{part}: no such file")
    if not overwrite and (output.exists() or pending_records(output)):
        raise OutputError(f"{output}: exists; pass --overwrite to replace it")
    check_writable(output)
    for part in part_paths:
        consolidate_journal(part)
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(_open_part(part)) for part in part_paths]
        _check_parts_agree(readers)
        needed = sum(part.stat().st_size for part in part_paths) + MIN_FREE_BYTES
        check_free_space(output, needed)
        return _merge_safely(output, readers)


def _merge_safely(output: Path, parts: Sequence[H5Reader]) -> MergeReport:
    """Merge into a temporary file renamed onto ``output``, holding ``output``'s journal lock
    (which keeps a concurrent extract or merge off this file)."""
    journal = open_journal(output, sync=True)
    temporary = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    try:
        remove_temporaries(output)
        report = _merge_into(temporary, parts, output)
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


def _merge_into(temporary: Path, parts: Sequence[H5Reader], output: Path) -> MergeReport:
    report = MergeReport(output=output)
    origin: dict[str, Path] = {}
    failures: dict[str, tuple[VideoFailure, PartCounts]] = {}
    with h5py.File(temporary, "w") as merged:
        for name, value in parts[0].options.items():
            merged.attrs[name] = h5_value(value)
        for part in parts:
            counts = PartCounts(part.path)
            report.parts.append(counts)
            for key in part.video_keys():
                if key in origin:
                    if not _groups_equal(merged[key], part.handle[key]):
                        raise OutputError(
                            f"{part.path}: video {key} differs from the one in {origin[key]}; "
                            "these outputs can't be merged"
                        )
                    counts.duplicates += 1
                    report.duplicates += 1
                    continue
                parent, _, name = key.rpartition("/")
                target = merged.require_group(parent) if parent else merged
                part.handle.copy(part.handle[key], target, name=name)
                origin[key] = part.path
                counts.videos += 1
            for failure in part.failures():
                failures.setdefault(failure.key, (failure, counts))
        for key, (failure, counts) in failures.items():
            if key in origin:
                continue  # a success anywhere wins over an error
            write_error_record(merged, key, failure.source, failure.message)
            counts.errors += 1
            report.errors += 1
    report.videos = len(origin)
    return report
