"""A crash-safe HDF5 file of one group per key, written through a journal.

HDF5 is not journaled: a process killed while writing into a file can leave the whole file
unreadable. So :class:`H5Store` never writes into ``OUT.h5`` while a run goes on:

1. Opening writes an ``options`` record (the run's attributes) to ``OUT.h5.journal``
   (:mod:`.journal`); each finished key is one more record (``video`` or ``error``), synced
   before :meth:`H5Store.write_group` returns. ``completed()`` is the complete groups of
   ``OUT.h5`` plus the journal's ``video`` records.
2. Closing *consolidates*: ``OUT.h5`` is copied to ``OUT.h5.tmp-<pid>`` (or a new file is
   made), the journal is replayed into the copy — each group's datasets, its attributes, and
   ``complete=True`` last; errors under ``/_errors``; a success removes the key's error record
   — the copy is synced and ``os.replace``-d onto ``OUT.h5``, the folder is synced, and only
   then is the journal deleted.
3. A kill at any moment leaves ``OUT.h5`` either the old or the new version, plus the journal
   with every committed record (a torn last record is cut off). Opening again removes leftover
   ``OUT.h5.tmp-*`` files and consolidates the journal before anything else; replaying a
   record whose group already exists with equal content changes nothing.

With ``overwrite`` the old file stays in place until the new run's first consolidation, which
starts from an empty file instead of a copy (the journal's ``options`` record says so).

Running out of disk, or any other failed write to the journal, raises :class:`OutputError`
with one line saying how many results are safe; the journal keeps them for the next run.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import h5py
import numpy as np

from ..errors import RunError
from .discover import check_key
from .journal import ArrayStream, Journal, JournalError, JournalRecord, fsync_folder, read_entries

ERRORS_GROUP = "_errors"

# Options that change the numbers in the file: resuming with other values would mix features.
RESUME_CHECKED = (
    "arch", "weights_sha256", "layer", "clip_len", "stride", "size", "crop", "tail", "dtype",
    "average_only", "mean", "std", "value_scale", "pool", "frame_stride", "channel_order",
    "fps", "start", "end", "max_clips", "max_frames", "chunks", "flow_method",
    "pool_mode", "pool_segments", "pool_every", "pool_interpolate", "window", "clips_per_video",
    "crops", "crop_reduce",
)  # fmt: skip
# What an option added later meant in the files made before it (otherwise: unset, "").
ADDED_DEFAULTS = {"window": "clips"}

#: Options recorded only when they differ from these values (``--crops 1`` writes no ``crops``):
#: absent from an output, they had this value.
UNSET_VALUES: dict[str, Any] = {"crops": 1, "crop_reduce": "none", "pool_mode": ""}

# Free space required beyond what consolidating needs, checked when an output is opened.
MIN_FREE_BYTES = 16 * 2**20

# Crash tests: seconds to sleep at each consolidation step (to kill the process from outside
# at a random moment), and a step at which the process SIGKILLs itself ("copied", "record-N",
# "synced", "replaced").
PAUSE_ENV = "FEAT3D_TEST_CONSOLIDATE_PAUSE"
KILL_ENV = "FEAT3D_TEST_CONSOLIDATE_KILL"

_COMPARE_BLOCK_BYTES = 64 * 2**20

CreateOptions = Callable[[str, np.ndarray], Mapping[str, Any]]


class OutputError(RunError):
    """The output can't be written, or holds results made with other options."""


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy arrays and scalars, tuples → lists)."""
    if isinstance(value, np.ndarray):
        items = value.tolist()
        return jsonable(items) if value.dtype.kind in "OS" else items  # (bytes in strings)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def h5_value(value: Any) -> Any:
    """``value`` as an HDF5 attribute (``None`` → ``""``, lists of strings → string arrays)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, str) for item in value):
            return np.asarray(value, dtype=h5py.string_dtype())
        return np.asarray(value)
    return value


def check_same_options(
    path: Path | str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    checked: Sequence[str] = RESUME_CHECKED,
) -> None:
    """Raise :class:`OutputError` naming the first option in ``checked`` that differs."""
    for name in checked:
        if name not in new and name not in UNSET_VALUES:
            continue
        # An option added in a later version is absent from older files: there it was unset
        # (or had its ADDED_DEFAULTS / UNSET_VALUES meaning).
        unset = UNSET_VALUES.get(name, ADDED_DEFAULTS.get(name, ""))
        before, now = jsonable(old.get(name, unset)), jsonable(new.get(name, unset))
        if before != now:
            raise OutputError(
                f"{path}: made with {name}={before!r}, this run uses {name}={now!r}; "
                "pass --overwrite to replace it or choose another output"
            )


def check_output_key(key: str) -> None:
    try:
        check_key(key)
    except ValueError as error:
        raise OutputError(f"{error}: keys must be relative paths (see discover_videos)") from None


def check_writable(path: Path) -> None:
    folder = path.parent if path.parent != Path("") else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{path}: cannot create folder {folder} ({error.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: folder {folder} is not writable")


def free_bytes(folder: Path) -> int:
    """Bytes available to this user in ``folder``'s file system."""
    return shutil.disk_usage(folder).free


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def check_free_space(path: Path, needed: int) -> None:
    """Raise :class:`OutputError` unless ``path``'s folder has ``needed`` bytes free."""
    folder = path.parent if path.parent != Path("") else Path(".")
    available = free_bytes(folder)
    if available < needed:
        raise OutputError(
            f"{path}: only {_mib(available)} free in {folder}, at least {_mib(needed)} needed "
            "(room to rewrite the output safely plus a margin); free space or choose another "
            "output"
        )


def journal_path(path: Path) -> Path:
    """``OUT.h5.journal`` beside ``OUT.h5``."""
    return path.with_name(path.name + ".journal")


def pending_records(path: str | os.PathLike[str]) -> int:
    """Results (videos and errors) waiting in ``path``'s journal, merged on the next open."""
    entries = read_entries(journal_path(Path(path)))
    return sum(entry.kind != "options" for entry in entries)


def _pause(step: str) -> None:
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        time.sleep(float(seconds))
    if os.environ.get(KILL_ENV) == step:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def remove_temporaries(path: Path) -> None:
    for leftover in path.parent.glob(f"{glob_escape(path.name)}.tmp-*"):
        leftover.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def commit_file(temporary: Path, path: Path) -> None:
    """Sync ``temporary``, rename it onto ``path`` and sync the folder."""
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _pause("synced")
    os.replace(temporary, path)
    fsync_folder(path.parent)


def _blocks(shape: tuple[int, ...], itemsize: int) -> Iterable[slice | tuple[()]]:
    if not shape:
        yield ()
        return
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    rows = max(1, _COMPARE_BLOCK_BYTES // row_bytes)
    for start in range(0, shape[0], rows):
        yield slice(start, start + rows)


def arrays_equal(a: np.ndarray | h5py.Dataset, b: np.ndarray | h5py.Dataset) -> bool:
    """Same dtype, shape and values (NaN equal to NaN), compared in bounded-memory blocks."""
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    for block in _blocks(tuple(a.shape), a.dtype.itemsize):
        if not np.array_equal(np.asarray(a[block]), np.asarray(b[block]), equal_nan=True):
            return False
    return True


def group_matches(
    group: h5py.Group, arrays: Mapping[str, np.ndarray | h5py.Dataset], attrs: Mapping[str, Any]
) -> bool:
    """Whether a complete group holds exactly these datasets and attributes."""
    if not group.attrs.get("complete", False) or set(group) != set(arrays):
        return False
    for name, array in arrays.items():
        dataset = group[name]
        if not isinstance(dataset, h5py.Dataset) or not arrays_equal(dataset, array):
            return False
    stored = {k: jsonable(v) for k, v in group.attrs.items() if k != "complete"}
    wanted = {k: jsonable(h5_value(v)) for k, v in attrs.items() if k != "complete"}
    return stored == wanted


def scan_groups(handle: h5py.File) -> tuple[set[str], list[str]]:
    """Complete group keys, and groups holding data without ``complete`` (a killed write)."""
    complete: set[str] = set()
    incomplete: list[str] = []

    def visit(name: str, obj: h5py.HLObject) -> None:
        if not isinstance(obj, h5py.Group) or name.split("/")[0] == ERRORS_GROUP:
            return
        if obj.attrs.get("complete", False):
            complete.add(name)
        elif any(isinstance(child, h5py.Dataset) for child in obj.values()):
            incomplete.append(name)

    handle.visititems(visit)
    return complete, incomplete


def error_name(key: str) -> str:
    """The ``/_errors`` member recording ``key``'s failure."""
    return f"{ERRORS_GROUP}/{quote(key, safe='')}"


def write_error_record(handle: h5py.File, key: str, source: str, message: str) -> None:
    name = error_name(key)
    if name in handle:
        del handle[name]
    record = handle.require_group(ERRORS_GROUP).create_group(name.split("/", 1)[1])
    record.attrs["video"] = key
    record.attrs["source"] = source
    record.attrs["message"] = message


def write_group(
    handle: h5py.File,
    key: str,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    create_options: CreateOptions | None = None,
) -> bool:
    """Write one complete group (``complete`` last), replacing a different one; clear the key's
    error record. Returns False when an equal group was already there (nothing written)."""
    if key in handle and group_matches(handle[key], arrays, attrs):
        written = False
    else:
        if key in handle:
            del handle[key]
        group = handle.create_group(key)
        for name, array in arrays.items():
            options = dict(create_options(name, array)) if create_options else {}
            group.create_dataset(name, data=array, **options)
        for name, value in attrs.items():
            group.attrs[name] = h5_value(value)
        group.attrs["complete"] = True
        written = True
    if error_name(key) in handle:
        del handle[error_name(key)]
    return written


def _replay(
    handle: h5py.File,
    records: Iterable[JournalRecord],
    create_options: CreateOptions | None,
) -> None:
    for number, record in enumerate(records):
        if record.kind == "video":
            write_group(handle, record.key, record.arrays, record.attrs, create_options)
        elif record.kind == "error":
            write_error_record(handle, record.key, record.attrs["source"], record.attrs["message"])
        _pause(f"record-{number}")


def _consolidate(path: Path, journal: Journal, create_options: CreateOptions | None = None) -> None:
    """Replay ``journal`` into a copy of ``path`` and swap it in; the journal is left as is."""
    header = journal.entries[0]
    if header.kind != "options":
        raise OutputError(f"{journal.path}: does not start with an options record; move it away")
    replaces = bool(header.attrs.get("replaces", False))
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        if path.exists() and not replaces:
            shutil.copyfile(path, temporary)
            mode = "r+"
        else:
            mode = "w"
        _pause("copied")
        with h5py.File(temporary, mode) as handle:
            for name, value in header.attrs["attrs"].items():
                if name not in handle.attrs or jsonable(handle.attrs[name]) != value:
                    handle.attrs[name] = h5_value(value)  # (rewriting an equal one grows the file)
            for name in scan_groups(handle)[1]:
                del handle[name]
            _replay(handle, journal.records(), create_options)
        commit_file(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        safe = sum(entry.kind == "video" for entry in journal.entries)
        reason = "disk full" if _is_disk_full(error) else f"write failed ({error})"
        raise OutputError(
            f"{path}: {reason} while merging the journal into it; {safe} videos are safe in "
            f"{journal.path.name}, free space and run the same command again"
        ) from error
    _pause("replaced")


def _is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(error)


def open_journal(path: Path, *, sync: bool) -> Journal:
    try:
        return Journal(journal_path(path), sync=sync)
    except JournalError as error:
        raise OutputError(str(error)) from None
    except OSError as error:
        raise OutputError(f"{path}: cannot open its journal ({error.strerror})") from None


def consolidate_journal(path: str | os.PathLike[str], *, sync: bool = True) -> int:
    """Merge a journal left beside ``path`` by a killed run into ``path``, then delete it.

    Returns:
        The number of results (videos and errors) the journal held; 0 when there was none.
    """
    path = Path(path)
    if not journal_path(path).exists():
        return 0
    check_writable(path)
    journal = open_journal(path, sync=sync)
    try:
        remove_temporaries(path)
        count = sum(entry.kind != "options" for entry in journal.entries)
        if journal.entries and (count or journal.entries[0].attrs.get("replaces")):
            check_free_space(path, _size(path) + _size(journal.path) + MIN_FREE_BYTES)
            _consolidate(path, journal)
        journal.remove()
        return count
    finally:
        journal.close()


class H5Store:
    """An HDF5 file of one group per key (datasets + attributes, ``complete`` last) and error
    records under ``/_errors``, safe against ``kill -9`` and a full disk (see the module doc).

    Args:
        path: The HDF5 file.
        attrs: Run options, stored as file attributes.
        overwrite: Start afresh (the old file is replaced when this store is first
            consolidated) instead of resuming.
        checked: Options that must agree with an existing file's to resume it.
        sync: ``fsync`` each journal record (survives power loss, not only a kill).
        min_free_bytes: Free space required at open beyond room for the copy consolidation
            makes.
        create_options: ``(name, array) -> kwargs`` for ``create_dataset`` (chunks,
            compression), applied when the journal is replayed.

    Raises:
        OutputError: Unwritable folder, too little free space, a file that is not HDF5, one
            made with other ``checked`` options (unless ``overwrite``), or another process
            writing the same output.
    """

    def __init__(
        self,
        path: Path,
        attrs: Mapping[str, Any],
        *,
        overwrite: bool,
        checked: Sequence[str] = RESUME_CHECKED,
        sync: bool = True,
        min_free_bytes: int = MIN_FREE_BYTES,
        create_options: CreateOptions | None = None,
    ):
        self.path = Path(path)
        self.attrs = {name: jsonable(value) for name, value in attrs.items()}
        self.create_options = create_options
        self._failed = False
        check_writable(self.path)
        fresh = not journal_path(self.path).exists()
        self.journal = open_journal(self.path, sync=sync)
        try:
            remove_temporaries(self.path)
            check_free_space(
                self.path, _size(self.path) + _size(self.journal.path) + min_free_bytes
            )
            if overwrite:
                self.journal.reset()
            elif self.journal.entries:
                _consolidate(self.path, self.journal, create_options)
                self.journal.reset()
            self._file_complete: set[str] = set()
            self._file_dirty = False
            if self.path.exists() and not overwrite:
                self._read_existing(checked)
            self.journal.append("", "options", {"attrs": self.attrs, "replaces": overwrite})
        except OSError as error:
            self._refused(fresh)
            raise OutputError(f"{self.path}: cannot start its journal ({error})") from error
        except BaseException:
            self._refused(fresh)
            raise
        self._journal_complete: set[str] = set()

    def _refused(self, fresh: bool) -> None:
        """Close the journal of a store that could not start; one this open made is removed,
        so a refused run (too little disk, other options) leaves no file behind."""
        self.journal.close()
        if fresh:
            self.journal.path.unlink(missing_ok=True)

    def _read_existing(self, checked: Sequence[str]) -> None:
        try:
            with h5py.File(self.path, "r") as handle:
                check_same_options(self.path, dict(handle.attrs), self.attrs, checked)
                self._file_complete, incomplete = scan_groups(handle)
        except OSError as error:
            raise OutputError(f"{self.path}: cannot open as HDF5 ({error})") from error
        self._file_dirty = bool(incomplete)

    def completed(self) -> set[str]:
        """Keys complete in the file or committed to the journal."""
        return self._file_complete | self._journal_complete

    def write_group(
        self, key: str, arrays: Mapping[str, np.ndarray | ArrayStream], attrs: Mapping[str, Any]
    ) -> None:
        """Commit one key's datasets and attributes (a journal record, synced)."""
        check_output_key(key)
        self._append(key, "video", {k: jsonable(v) for k, v in attrs.items()}, arrays)
        self._journal_complete.add(key)

    def write_error(self, key: str, source: str, message: str) -> None:
        """Commit a failure record for ``key`` (``/_errors`` once consolidated)."""
        self._append(key, "error", {"source": source, "message": message}, {})

    def _append(
        self,
        key: str,
        kind: str,
        attrs: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray | ArrayStream],
    ) -> None:
        if self.journal.fd < 0:
            raise OutputError(f"{self.path}: the output is closed")
        try:
            self.journal.append(key, kind, attrs, arrays)
        except OSError as error:
            self._failed = True
            safe = sum(entry.kind == "video" for entry in self.journal.entries)
            reason = "disk full" if _is_disk_full(error) else f"write failed ({error.strerror})"
            raise OutputError(
                f"{self.path}: {reason} while writing video {key}; {safe} videos are safe in "
                "the journal, free space and run the same command again"
            ) from error

    def close(self) -> None:
        """Consolidate the journal into the file and delete it. After a failed write the
        journal is only closed: the next open merges it."""
        if self.journal.fd < 0:
            return
        try:
            if self._failed:
                return
            replaces = bool(self.journal.entries[0].attrs.get("replaces"))
            has_results = len(self.journal.entries) > 1
            if has_results or replaces or self._file_dirty or not self.path.exists():
                _consolidate(self.path, self.journal, self.create_options)
            self.journal.remove()
        finally:
            self.journal.close()

    def __enter__(self) -> H5Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
