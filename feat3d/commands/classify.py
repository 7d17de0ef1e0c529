"""``feat3d classify``: top-k action labels of videos and of their clips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..cli import (
    format_option,
    json_option,
    model_options,
    plot_option,
)
from ..cli_video import (
    clip_options,
    two_stream_options,
)
from ..options import ClipOptions, ModelOptions, RunOptions, TwoStreamOptions
from ..plots import require_matplotlib
from ..run.classify import classify, write_json
from .common import load
from .predictions import plot_timelines, print_predictions
from .progress import CliEvents


@click.command("classify")
@click.argument("inputs", nargs=-1, required=True, metavar="VIDEOS...")
@model_options
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Labels per video (and per clip).")  # fmt: skip
@click.option("--per-clip", is_flag=True,
              help="Also print each clip's top-k with its frames and times.")  # fmt: skip
@json_option("Write the predictions as JSON to this file ('-' for stdout).", to_file=True)
@format_option(["feat3d", "hara"], "JSON schema: feat3d's, or that of Hara et al.'s classify "
               "tool.", default="feat3d")  # fmt: skip
@plot_option("Draw each video's per-clip probabilities of its top-k classes over time into "
             "DIR/<video key>.png (needs matplotlib).",
             folder=True)  # fmt: skip
@clip_options
@two_stream_options
def classify_command(
    inputs: tuple[str, ...], network: ModelOptions, clips: ClipOptions,
    two_stream: TwoStreamOptions, top_k: int, per_clip: bool, json_path: Path | None,
    output_format: str, plot_path: Path | None, batch_size: int, workers: int | str,
    quiet: bool, verbose: bool,
) -> None:  # fmt: skip
    """Top-k action labels of each video (mean of clip softmax scores) and, with --per-clip,
    of each clip.

    \b
    Examples:
      feat3d classify clip.mp4
      feat3d classify videos/ --per-clip --json labels.json
      feat3d classify clip.mp4 -w resnet-34-kinetics.pth --format hara --json out.json
      feat3d classify videos/ --stride 8 --plot timelines/
      feat3d classify videos/ --clips-per-video 10   # the multi-view test
    """
    if plot_path is not None:
        require_matplotlib()
    vm = load(network, quiet=quiet)
    with CliEvents(quiet=quiet, verbose=verbose, what="classify") as events:
        report = classify(
            inputs, model=vm, top_k=top_k, clips=clips, two_stream=two_stream, events=events,
            run=RunOptions(batch_size=batch_size, workers=workers),
        )  # fmt: skip
    to_stdout = json_path is not None and str(json_path) == "-"
    if to_stdout:
        hara = output_format == "hara"
        data = report.to_hara(vm.categories) if hara else report.to_json()
        click.echo(json.dumps(data, indent=1, ensure_ascii=False))
    elif json_path is not None:
        write_json(report, json_path, format=output_format, categories=vm.categories)
    if not to_stdout:
        print_predictions(report, per_clip=per_clip)
    if plot_path is not None:
        plot_timelines(report, plot_path, top=top_k, categories=vm.categories)
        if not quiet:
            click.echo(f"{len(report.videos)} timeline(s) written to {plot_path}", err=True)
    if report.failures:
        sys.exit(1)
