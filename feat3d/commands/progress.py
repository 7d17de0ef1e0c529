"""Progress on stderr: a rich bar on a terminal, plain lines otherwise (runs and epochs)."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..cli import err_console
from ..io.writers import VideoFailure
from ..run.events import RunEvents


class _Bar:
    """A rich progress bar that exists only on a terminal and when not quiet."""

    quiet: bool
    progress: Progress | None = None
    task: Any = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _start(self, what: str, total: int | None, *columns: Any, **fields: Any) -> None:
        console = err_console()
        if self.quiet or not console.is_terminal:
            return
        self.progress = Progress(*columns, console=console)
        self.task = self.progress.add_task(what, total=total, **fields)
        self.progress.start()

    def _line(self, text: str, **style: Any) -> None:
        """``text`` above the bar, or as a plain line on stderr without one."""
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, **style)
        else:
            click.echo(text, err=True)


class CliEvents(_Bar, RunEvents):
    """The events of an extract, classify or flow run."""

    def __init__(self, *, quiet: bool, verbose: bool, what: str, unit: str = "clips"):
        self.quiet = quiet
        self.verbose = verbose
        self.what = what
        self.unit = unit
        self.clips = self.done = self.total = 0
        self.started = time.perf_counter()

    def on_start(self, *, total: int, skipped: int) -> None:
        self.total = total
        self.started = time.perf_counter()
        if skipped and not self.quiet:
            err_console().print(
                f"resuming: {skipped} video(s) already complete in the output, skipped"
            )
        self._start(
            self.what, total, TextColumn(f"[bold]{self.what}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(f"videos · {{task.fields[rate]}} {self.unit}/s"), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), rate="–",
        )  # fmt: skip

    def _rate(self) -> str:
        elapsed = time.perf_counter() - self.started
        return f"{self.clips / elapsed:.1f}" if elapsed > 0 else "–"

    def on_clips(self, count: int) -> None:
        self.clips += count
        if self.progress is not None:
            self.progress.update(self.task, rate=self._rate())

    def _advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.task, advance=1, rate=self._rate())

    def on_video(self, key: str, n_clips: int) -> None:
        self._advance()
        if self.progress is None and not self.quiet:
            click.echo(
                f"[{self.done}/{self.total}] {key}: {n_clips} {self.unit} "
                f"({self._rate()} {self.unit}/s)",
                err=True,
            )
        elif self.verbose and self.progress is not None:
            self.progress.console.print(f"{key}: {n_clips} {self.unit}")

    def on_failure(self, failure: VideoFailure) -> None:
        self._advance()
        self._line(f"error: {failure.source}: {failure.message}", style="red")


class EpochProgress(_Bar):
    """A bar over an epoch's batches on a terminal, and one line per finished epoch."""

    def __init__(self, *, quiet: bool):
        self.quiet = quiet

    def __enter__(self) -> EpochProgress:
        self._start(
            "train", None, TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("batches"), TimeElapsedColumn(), TimeRemainingColumn(),
        )  # fmt: skip
        return self

    def batch(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def message(self, text: str) -> None:
        """One line from the run (a warning, the learning rate it trains at)."""
        self._line(text)

    def epoch(self, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        self._line(
            " ".join(
                f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                for key, value in row.items()
            )
        )
