"""Progress hooks of a run over videos; the command line overrides them to draw its progress."""

from __future__ import annotations

from ..io.writers import VideoFailure


class RunEvents:
    """Progress hooks of a run; each does nothing unless overridden."""

    def on_start(self, *, total: int, skipped: int) -> None:
        """Called once, with the number of videos to process and those already done."""

    def on_clips(self, count: int) -> None:
        """Called after each batch with its number of clips."""

    def on_video(self, key: str, n_clips: int) -> None:
        """Called when a video is complete (and written)."""

    def on_failure(self, failure: VideoFailure) -> None:
        """Called when a video fails."""
