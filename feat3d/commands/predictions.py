"""How ``feat3d classify`` shows its labels: tables on stdout and per-clip timelines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..plots import plot_clip_timeline, timeline_path
from ..run.classify import ClassifyReport
from .common import out_console


def print_predictions(report: ClassifyReport, *, per_clip: bool) -> None:
    """The model once, then the labels: one table of all videos with ``-k 1``, else a table
    per video."""
    console = out_console()
    marker = escape(" [random weights]") if report.random_weights else ""
    console.print(escape(f"{report.arch} ({report.weights})") + marker, highlight=False)
    if report.videos and all(len(video.top_k) == 1 for video in report.videos) and not per_clip:
        table = Table()
        for name, justify in (("video", "left"), ("label", "left"), ("score", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for video in report.videos:
            best = video.top_k[0]
            table.add_row(escape(video.video), escape(best.label) + marker, f"{best.score:.4f}")
        console.print(table)
        return
    for video in report.videos:
        console.print(escape(video.video), style="bold", highlight=False)
        table = Table()
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        for rank, label in enumerate(video.top_k, 1):
            table.add_row(str(rank), escape(label.label) + marker, f"{label.score:.4f}")
        console.print(table)
        if per_clip:
            clips = Table(title=escape(f"{video.video} — per clip"), title_justify="left")
            clips.add_column("frames")
            clips.add_column("seconds")
            clips.add_column("top labels")
            for clip in video.clips:
                labels = escape(", ".join(f"{lab.label} {lab.score:.3f}" for lab in clip.top_k))
                clips.add_row(
                    f"{clip.segment[0]}–{clip.segment[1]}",
                    f"{clip.time[0]:.2f}–{clip.time[1]:.2f}",
                    labels + marker,
                )
            console.print(clips)


def plot_timelines(
    report: ClassifyReport, folder: Path, *, top: int, categories: Sequence[str]
) -> None:
    """Each video's per-clip probabilities of its top classes into ``folder/<key>.png``."""
    marker = " [random weights]" if report.random_weights else ""
    for video in report.videos:
        plot_clip_timeline(
            video, timeline_path(folder, video.video), top=top, categories=categories,
            title=f"{video.video}: class probability per clip ({report.arch}){marker}",
        )  # fmt: skip
