"""CPU time of every process on this machine between two snapshots, grouped by the role it
plays in a Ray run (Linux ``/proc`` only): where the cores went, not only how fast it was.

A process's figure is its own time plus that of its children it has reaped (a Ray worker's
decoding child processes count in the worker); processes that start and end between the
snapshots without a surviving parent are missed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

#: Process titles (``ray::…`` names, executables) → the role reported.
ROLES = (
    ("ClipNetwork", "inference actor"),
    ("ray::IDLE", "decoding and write tasks"),
    ("decode_video", "decoding and write tasks"),
    ("write_parts", "decoding and write tasks"),
    ("raylet", "Ray's own processes"),
    ("gcs_server", "Ray's own processes"),
    ("ray::_", "Ray's own processes"),
    ("ray::ActorLocationTracker", "Ray's own processes"),
    ("dashboard", "Ray's own processes"),
    ("ray/", "Ray's own processes"),
)


def snapshot() -> dict[int, tuple[str, float]]:
    """``pid → (command line, CPU seconds of it and its reaped children)``."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        seconds = sum(int(value) for value in fields[11:15]) / ticks
        found[int(entry.name)] = (command or stat.split("(", 1)[1].split(")")[0], seconds)
    return found


def by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
            driver: int) -> Counter[str]:  # fmt: skip
    """CPU seconds per role between two snapshots; ``driver``: the pid running the run."""
    roles: Counter[str] = Counter()
    for pid, (command, seconds) in after.items():
        spent = seconds - before.get(pid, (command, 0.0))[1]
        if spent <= 0:
            continue
        if pid == driver:
            roles["driver (this process)"] += spent
            continue
        role = next((name for mark, name in ROLES if mark in command), "other processes")
        roles[role] += spent
    return roles
