"""What every run over videos shares: its progress hooks (the command line overrides them to
draw its progress) and the core of its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..io.writers import VideoFailure


@dataclass
class VideosReport:
    """What a run over videos did, by video key.

    Attributes:
        output: Where the results went (a URL without its credentials; ``None``: returned in
            memory).
        written: Keys written (or returned) by this run.
        skipped: Keys already complete in the output (resume).
        failures: Videos that failed, with their reasons.
    """

    output: Path | str | None = None
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[VideoFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class RunEvents:
    """Progress hooks of a run; each does nothing unless overridden.

    Attributes:
        quiet: Whether the run keeps the displays of the engines it uses off the terminal
            too (Ray Data's progress bars and log lines with ``engine="ray"``).
    """

    quiet: bool = False

    def on_start(self, *, total: int, skipped: int) -> None:
        """Called once, with the number of videos to process and those already done."""

    def on_clips(self, count: int) -> None:
        """Called after each batch with its number of clips."""

    def on_video(self, key: str, n_clips: int) -> None:
        """Called when a video is complete (and written)."""

    def on_failure(self, failure: VideoFailure) -> None:
        """Called when a video fails."""
