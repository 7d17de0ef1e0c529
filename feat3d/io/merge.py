"""Sharding a run over machines and merging the outputs of the shards into one.

``shard_of`` assigns every video key to one of ``N`` shards the same way on every machine
and Python version; each shard writes its own output; ``merge_outputs`` checks the shards
were made with the same options and combines them: HDF5 shards by copying their complete
groups into one file, written to a temporary file and renamed into place like every HDF5
output (a kill never leaves a half-merged file); Parquet shards by copying their committed
parts into one Parquet folder (a kill leaves what a killed extract leaves: committed parts,
and the merge resumes), or into one HDF5 file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import urls
from . import leases, parquet
from .h5store import (
    ADDED_DEFAULTS,
    MIN_FREE_BYTES,
    RESUME_CHECKED,
    H5Store,
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
from .parquet import CLIPS, SUFFIX, VIDEOS
from .reader import (
    H5Reader,
    OutputReader,
    ParquetReader,
    ReadError,
    VideoArrays,
    VideoFailure,
    open_output,
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


def _check_parts_agree(parts: Sequence[OutputReader]) -> None:
    first = parts[0]
    for other in parts[1:]:
        for name in RESUME_CHECKED:
            default = ADDED_DEFAULTS.get(name)
            before, now = first.options.get(name, default), other.options.get(name, default)
            if before != now:
                raise OutputError(
                    f"{urls.mask_url(other.path)}: made with {name}={now!r}, but "
                    f"{urls.mask_url(first.path)} with {name}={before!r}; only outputs of the "
                    "same options can be merged"
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
    """Merge outputs of ``feat3d extract`` (e.g. the shards of one run) into ``output``.

    Into an HDF5 file from HDF5 files: journals left beside the inputs by killed runs are
    consolidated first. Every complete group is copied (datasets, chunking, attributes as
    they are); a key in several inputs is kept once when its datasets are identical and
    refused otherwise; an error record is kept only for a key no input holds complete. File
    attributes are the first input's. From other formats (Parquet folders, JSON Lines, npy
    folders) the arrays are written as stored through a journal
    (:func:`merge_into_h5_store`). Into a Parquet folder (``output`` named ``*.parquet``):
    :func:`merge_into_parquet` copies the inputs' committed parts.

    Args:
        output: The merged HDF5 file, written via a temporary file and an atomic rename, or
            a Parquet folder (a path or a URL).
        parts: Input outputs (paths; Parquet folders may be URLs), made with the same
            options (``RESUME_CHECKED``).
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
    if is_parquet_target(output):
        return merge_into_parquet(output, parts, overwrite=overwrite)
    output = Path(output)
    locations = [urls.as_location(part) for part in parts]
    part_paths = [part for part in locations if isinstance(part, Path)]
    if not locations:
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
        if not part.is_dir():
            consolidate_journal(part)
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(_open_any(part)) for part in locations]
        _check_parts_agree(readers)
        if not all(isinstance(reader, H5Reader) for reader in readers):
            return merge_into_h5_store(output, readers, overwrite=overwrite)
        needed = sum(part.stat().st_size for part in part_paths) + MIN_FREE_BYTES
        check_free_space(output, needed)
        return _merge_safely(output, readers)  # type: ignore[arg-type]


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


# ------------------------------------------------------------------ other formats, Parquet

#: Stored attributes that describe where a video sits in its output, not the video.
_PLACE_ATTRS = ("part", "file", "video")


def is_parquet_target(output: str | os.PathLike[str]) -> bool:
    """Whether a merge into ``output`` writes a Parquet folder: its name ends in ``.parquet``
    or it is an existing Parquet folder."""
    if urls.is_url(output):
        return str(output).rstrip("/").lower().endswith(SUFFIX)
    path = Path(output)
    return path.suffix.lower() == SUFFIX or (path / VIDEOS).is_dir()


def _open_any(part: str | os.PathLike[str]) -> OutputReader:
    try:
        return open_output(part)
    except ReadError as error:
        raise OutputError(str(error)) from None


def _same_video(a: VideoArrays, b: VideoArrays) -> bool:
    pairs = [(a.features, b.features), (a.mean, b.mean), (a.segments, b.segments),
             (a.timestamps, b.timestamps)]  # fmt: skip
    return all(
        (x is None) == (y is None) and (x is None or arrays_equal(np.asarray(x), np.asarray(y)))
        for x, y in pairs
    )


def _same_part(a: OutputReader, b: OutputReader, key: str) -> bool:
    """Both Parquet folders hold ``key`` in a part of the same (unique) name."""
    if not isinstance(a, ParquetReader) or not isinstance(b, ParquetReader):
        return False
    return a.video(key).attrs.get("part") == b.video(key).attrs.get("part")


def first_holders(readers: Sequence[OutputReader]) -> dict[str, OutputReader]:
    """Per complete key, the first reader that holds it; a key in several readers must have
    the same arrays in each (checked before anything is written).

    Raises:
        OutputError: A key with different content in two readers.
    """
    origin: dict[str, OutputReader] = {}
    for reader in readers:
        for key in reader.video_keys():
            if key not in origin:
                origin[key] = reader
            elif _same_part(origin[key], reader, key):
                continue  # a part copied before (a resumed Parquet merge)
            elif not _same_video(origin[key].arrays(key), reader.arrays(key)):
                raise OutputError(
                    f"{urls.mask_url(reader.path)}: video {key} differs from the one in "
                    f"{urls.mask_url(origin[key].path)}; these outputs can't be merged"
                )
    return origin


def _stored_arrays(arrays: VideoArrays) -> dict[str, np.ndarray]:
    stored = {"segments": arrays.segments, "timestamps": arrays.timestamps}
    if arrays.features is not None:
        stored["features"] = arrays.features
    mean = arrays.mean
    if mean is None and arrays.features is not None:  # npy folders store clips only
        mean = arrays.features.astype(np.float64).mean(axis=0).astype(arrays.features.dtype)
    if mean is not None:
        stored["mean"] = mean
    return stored


def merge_into_h5_store(
    output: Path, readers: Sequence[OutputReader], *, overwrite: bool
) -> MergeReport:
    """Merge outputs of any format (Parquet folders, JSON Lines, npy) into the HDF5 file
    ``output`` through :class:`.h5store.H5Store` (journaled: a kill leaves the journal, which
    the next open completes). Arrays and attributes are written as stored."""
    origin = first_holders(readers)
    report = MergeReport(output=output)
    store = H5Store(output, readers[0].options, overwrite=overwrite)
    failed: set[str] = set()
    try:
        done = store.completed()
        for reader in readers:
            counts = PartCounts(reader.path)  # type: ignore[arg-type]
            report.parts.append(counts)
            for key in reader.video_keys():
                if origin[key] is not reader:
                    counts.duplicates += 1
                    continue
                if key not in done:
                    attrs = {k: v for k, v in reader.video(key).attrs.items()
                             if k not in _PLACE_ATTRS}  # fmt: skip
                    store.write_group(key, _stored_arrays(reader.arrays(key)), attrs)
                counts.videos += 1
            for failure in reader.failures():
                if failure.key not in origin and failure.key not in failed:
                    store.write_error(failure.key, failure.source, failure.message)
                    failed.add(failure.key)
                    counts.errors += 1
    finally:
        store.close()
    return _totals(report)


def _totals(report: MergeReport) -> MergeReport:
    report.videos = sum(part.videos for part in report.parts)
    report.duplicates = sum(part.duplicates for part in report.parts)
    report.errors = sum(part.errors for part in report.parts)
    return report


def merge_into_parquet(
    output: str | os.PathLike[str], parts: Sequence[str | os.PathLike[str]], *,
    overwrite: bool = False,
) -> MergeReport:  # fmt: skip
    """Merge Parquet folders (e.g. the shards of one run, local or at URLs) into the Parquet
    folder ``output`` by copying their committed parts, clip part then videos part, under
    their own names. A merge adds to an existing ``output`` made with the same options, and a
    killed merge resumes: parts already there are skipped. A part holding videos that are
    already merged (the same arrays: checked first) is copied without them.

    Raises:
        OutputError: No inputs, an input that is not a Parquet folder, inputs made with
            other options, a key with different content in two of them, or an unwritable
            ``output``.
    """
    target = parquet.folder_fs(output)
    if not parts:
        raise OutputError(f"{target.shown}: nothing to merge (no input folders given)")
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(_open_any(part)) for part in parts]
        for reader in readers:
            if not isinstance(reader, ParquetReader):
                raise OutputError(
                    f"{urls.mask_url(reader.path)}: not a Parquet folder; a Parquet merge "
                    "copies Parquet parts (merge into OUT.h5 to combine other formats)"
                )
            if (reader.folder.fs.protocol, reader.folder.root) == (target.fs.protocol,
                                                                   target.root):  # fmt: skip
                raise OutputError(f"{target.shown}: is also an input; merge into another folder")
        _check_parts_agree(readers)
        if overwrite:
            parquet.remove_parts(target)
        index = parquet.check_resumable(target, readers[0].options)
        for kind in (CLIPS, VIDEOS):
            target.fs.makedirs(f"{target.root}/{kind}", exist_ok=True)
        existing = [stack.enter_context(ParquetReader(output))] if index.videos else []
        origin = first_holders([*existing, *readers])
        present: dict[str, set[str]] = {name: set() for name in index.parts}
        for key, record in index.videos.items():
            present[record["part"]].add(key)
        return _copy_parts(target, readers, origin, present)  # type: ignore[arg-type]


class _Target:
    """The Parquet folder a merge writes: the writers' leases it holds, and the shared clip
    parts (:mod:`.parquet`) in it with the videos their rows are of (read from a part's
    footer when first needed)."""

    def __init__(self, folder: parquet.Folder):
        self.folder = folder
        self.leases: set[str] = set()
        self.shared: dict[str, set[str] | None] = dict.fromkeys(parquet.list_parts(folder, CLIPS))

    def hold(self, name: str) -> None:
        """Hold the lease of the writer of part ``name``: this process now writes its parts."""
        writer = leases.writer_of(name)
        if writer not in self.leases:
            fs, root = self.folder.fs, self.folder.root
            self.folder.run(lambda: leases.hold(fs, root, writer), "lease")
            self.leases.add(writer)

    def release(self) -> None:
        for writer in self.leases:
            with contextlib.suppress(Exception):  # a lease left behind goes stale, no harm done
                leases.release(self.folder.fs, self.folder.root, writer)

    def copy_shared(self, source: parquet.Folder, name: str, wanted: set[str]) -> None:
        """Make the shared clip part ``name`` here hold the rows of ``wanted`` in
        ``source``'s: copied whole when it holds just those, else only their rows, added to
        the rows the part here holds (a killed merge's copy, swept since by a reopen)."""
        have = self.shared.get(name, set())
        if have is None:
            have = self.shared[name] = parquet.clip_part_keys(self.folder, name)
        if wanted <= have:
            return
        self.hold(name)
        try:
            data = parquet.part_bytes(source, CLIPS, name)
        except FileNotFoundError:
            raise OutputError(
                f"{source.shown}: clip part {name}, named by committed videos rows, is missing; "
                "this input is damaged and cannot be merged"
            ) from None
        table = parquet.bytes_table(data)
        stored = set(table.column("video").to_pylist())
        adding = (wanted - have) & stored
        if not adding:
            return
        if have or adding != stored:
            table = parquet.keep_videos(table, adding)
            if have:
                old = parquet.read_part(self.folder, CLIPS, name)
                rows = table.replace_schema_metadata(old.schema.metadata)
                table = parquet.keep_videos(_concat(old, rows), have | adding)
            data = parquet.table_bytes(table)
        parquet.put_atomic(self.folder, self.folder.path(CLIPS, name), data)
        self.shared[name] = have | adding


def _concat(first: Any, second: Any) -> Any:
    return parquet.pyarrow_modules()[0].concat_tables([first, second])


def _shared_wanted(reader: ParquetReader, origin: dict[str, OutputReader]) -> dict[str, set[str]]:
    """Per shared clip part of ``reader``, the videos it is first to hold whose committed
    videos rows refer to that part (its other rows are dead, or another input's)."""
    wanted: dict[str, set[str]] = {}
    for key in reader.video_keys():
        if origin.get(key) is reader:
            own = reader.video(key).attrs.get("part")
            for name in reader.clip_parts(key):
                if name != own:
                    wanted.setdefault(name, set()).add(key)
    return wanted


def _copy_parts(
    target: parquet.Folder, readers: Sequence[ParquetReader], origin: dict[str, OutputReader],
    present: dict[str, set[str]],
) -> MergeReport:  # fmt: skip
    """Copy every input's committed parts not in the target yet (``present``: the target's
    videos parts, with the videos each holds)."""
    report = MergeReport(output=target.shown)  # type: ignore[arg-type]
    merged = _Target(target)
    try:
        for reader in readers:
            counts = PartCounts(reader.path)  # type: ignore[arg-type]
            report.parts.append(counts)
            folder = reader.folder
            clip_parts = set(parquet.list_parts(folder, CLIPS))
            wanted = _shared_wanted(reader, origin)
            for name in parquet.list_parts(folder, VIDEOS):
                merged.hold(name)
                _copy_part(folder, merged, name, reader, origin, counts, wanted,
                           already=present.get(name), has_clips=name in clip_parts)  # fmt: skip
    finally:
        merged.release()
    return _totals(report)


def _copy_part(
    source: parquet.Folder, merged: _Target, name: str, reader: ParquetReader,
    origin: dict[str, OutputReader], counts: PartCounts, wanted: dict[str, set[str]], *,
    already: set[str] | None, has_clips: bool,
) -> None:  # fmt: skip
    """Copy one committed part, byte for byte (or only its rows of videos ``reader`` is first
    to hold): the shared clip parts its rows refer to (:meth:`_Target.copy_shared`), its
    clip part, then its videos part. ``already``: the videos the target's part of that name
    holds (``None``: not there)."""
    target = merged.folder
    videos_data = parquet.part_bytes(source, VIDEOS, name)
    videos = parquet.bytes_table(videos_data)
    keys = videos.column("video").to_pylist()
    errors = videos.column("error").to_pylist()
    done = {k for k, e in zip(keys, errors, strict=True) if e is None}
    ours = done & already if already is not None else {k for k in done if origin.get(k) is reader}
    counts.videos += len(ours)
    counts.duplicates += len(done - ours)
    counts.errors += sum(
        e is not None and k not in origin for k, e in zip(keys, errors, strict=True)
    )
    if already is not None:
        return
    for part in sorted({p for k in ours for p in reader.clip_parts(k) if p in wanted}):
        merged.copy_shared(source, part, wanted[part])
    clips_data = parquet.part_bytes(source, CLIPS, name) if has_clips else b""
    if done - ours:
        videos = _without(videos, done - ours)
        if not videos.num_rows:
            return
        videos_data = parquet.table_bytes(videos)
        if clips_data:
            clips_data = parquet.table_bytes(_without(parquet.bytes_table(clips_data), done - ours))
    if clips_data:
        parquet.put_atomic(target, target.path(CLIPS, name), clips_data)
    parquet.put_atomic(target, target.path(VIDEOS, name), videos_data)


def _without(table: Any, keys: set[str]) -> Any:
    """The rows of ``table`` whose ``video`` is not in ``keys``."""
    pa = parquet.pyarrow_modules()[0]
    return table.filter(pa.array([key not in keys for key in table.column("video").to_pylist()]))
