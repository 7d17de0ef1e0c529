"""Who is writing a Parquet folder now: one lease per open writer, so that reopening a folder
tells a part a live writer has in flight from the orphan a killed run left behind.

A writer holds ``OUT/_writers/<writer id>.json`` (host, process id, when it was renewed)
from the moment it opens the folder until it closes it, and renews it before each part it
commits. A clip part without its videos part belongs to a *live* writer when its lease
exists and

- names this process: the writer is still open here (:func:`hold` registers it);
- names another process of this host: that process is still running;
- names another host: it was renewed less than :data:`STALE_SECONDS` ago (a host cannot
  see another's processes, so a lease that old counts as a writer that died).

Anything else (no lease: the writer closed, or was a version without leases; a dead
process; a stale lease) is an orphan that the reopening writer deletes. The ``_`` prefix keeps
the leases out of what pyarrow, pandas, Ray and ``datasets`` read as the data set.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

LEASES = "_writers"
#: A lease of another host not renewed for this long belongs to a writer that died.
STALE_SECONDS = 3600.0

#: Writer ids open in this process (a process may hold several writers, and tests
#: abandon one without closing it to play a killed run).
_OPEN: set[str] = set()


@dataclass(frozen=True)
class Lease:
    """One writer's claim on a folder.

    Attributes:
        writer: Its id (the prefix of its part names).
        host: The host name it runs on.
        pid: Its process id there.
        renewed: When it was written last (seconds since the epoch).
    """

    writer: str
    host: str
    pid: int
    renewed: float


def _path(root: str, writer: str) -> str:
    return f"{root}/{LEASES}/{writer}.json"


def hold(fs: Any, root: str, writer: str) -> None:
    """Write (or renew) the lease of ``writer``, an open writer of this process."""
    _OPEN.add(writer)
    lease = {"writer": writer, "host": socket.gethostname(), "pid": os.getpid(),
             "renewed": time.time()}  # fmt: skip
    fs.makedirs(f"{root}/{LEASES}", exist_ok=True)
    fs.pipe_file(_path(root, writer), json.dumps(lease).encode())


def release(fs: Any, root: str, writer: str) -> None:
    """Drop the lease of ``writer`` (it closed: it has nothing in flight any more)."""
    _OPEN.discard(writer)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(_path(root, writer))


def read_lease(fs: Any, root: str, writer: str) -> Lease | None:
    """The lease of ``writer``, ``None`` when there is none (or it cannot be parsed)."""
    try:
        data = json.loads(fs.cat_file(_path(root, writer)))
        return Lease(str(data["writer"]), str(data["host"]), int(data["pid"]),
                     float(data["renewed"]))  # fmt: skip
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def is_live(lease: Lease | None, *, now: float | None = None) -> bool:
    """Whether the writer of ``lease`` may still commit parts (see the module docstring)."""
    if lease is None:
        return False
    if lease.host == socket.gethostname():
        if lease.pid == os.getpid():
            return lease.writer in _OPEN
        return _running(lease.pid)
    return (time.time() if now is None else now) - lease.renewed < STALE_SECONDS


def live_writers(fs: Any, root: str) -> set[str]:
    """Ids of the writers that hold a live lease on the folder; the dead ones' leases are
    removed."""
    folder = f"{root}/{LEASES}"
    if not fs.isdir(folder):
        return set()
    live = set()
    for path in fs.ls(folder, detail=False):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if not name.endswith(".json"):
            continue
        writer = name[: -len(".json")]
        if is_live(read_lease(fs, root, writer)):
            live.add(writer)
        else:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(_path(root, writer))
    return live


def writer_of(part: str) -> str:
    """The writer id in a part's name (``part-<writer>-<n>.parquet``, also as a hidden
    temporary ``.part-<writer>-<n>.parquet.tmp-<pid>``); ``""`` when it has none."""
    name = part.lstrip(".").split(".parquet", 1)[0]
    if not name.startswith("part-") or "-" not in name[5:]:
        return ""
    return name[5:].rsplit("-", 1)[0]
