"""feat3d's error types: one base, split by what the command line should exit with.

Every error feat3d raises on purpose is a :class:`Feat3dError` with a one-line message that
names the file and the reason. The command line maps them once (``feat3d.cli``): a
:class:`UsageError` (the request cannot be done as asked: a bad option, a missing input) exits
with status 2, a :class:`RunError` (the run failed: an unreadable checkpoint, a full disk)
with status 1. The Python API raises the same classes, so ``except Feat3dError`` catches them all.
"""

from __future__ import annotations


class Feat3dError(Exception):
    """Base of every error feat3d raises for bad input or a failed run."""

    exit_code = 1


class UsageError(Feat3dError):
    """The request cannot be carried out as given: exit status 2."""

    exit_code = 2


class RunError(Feat3dError):
    """The run was set up correctly but failed: exit status 1."""

    exit_code = 1
