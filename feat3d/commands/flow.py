"""``feat3d flow``: optical flow of videos into an HDF5 file for two-stream networks."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..cli import (
    frame_rate_option,
    output_option,
    overwrite_option,
    quiet_option,
    verbose_option,
    workers_option,
)
from ..cli_video import (
    flow_method_option,
)
from ..flow import extract_flow
from .progress import CliEvents


@click.command("flow")
@click.argument("inputs", nargs=-1, required=True, metavar="VIDEOS...")
@output_option("HDF5 file for the flow (uint8, see README).", kind="file")
@flow_method_option("--method", "tvl1 (the paper's), dis (about 100× faster), farneback.")
@click.option("--short-side", type=click.IntRange(min=8), default=256, show_default=True,
              help="Resize frames so their short side has N pixels (aspect kept).")  # fmt: skip
@click.option("--bound", type=click.FloatRange(min=0, min_open=True), default=20.0,
              show_default=True,
              help="Clip displacements to ±B pixels; uint8 spans ±B.")  # fmt: skip
@overwrite_option("Replace the output. Without it, videos already complete are skipped.")
@workers_option("Processes, one video each (0: this process; auto: one per core).")
@frame_rate_option()
@quiet_option()
@verbose_option()
def flow_command(
    inputs: tuple[str, ...], output: Path, method: str, short_side: int, bound: float,
    overwrite: bool, workers: int | str, frame_rate: float | None, quiet: bool, verbose: bool,
) -> None:  # fmt: skip
    """Optical flow of VIDEOS (files, folders, @list.txt) into an HDF5 file, for two-stream
    networks (st-resnet-50): TV-L1 at short side 256 clipped to ±20 px, stored as uint8.

    \b
    Examples:
      feat3d flow videos/ -o flow.h5
      feat3d flow a.mp4 b.mkv -o flow.h5 --method dis -j 4
      feat3d flow jpg/ -o flow.h5 --frame-rate 25   # folders of frame images
    """
    with CliEvents(quiet=quiet, verbose=verbose, what="flow", unit="fields") as events:
        report = extract_flow(
            inputs, output, method=method, short_side=short_side, bound=bound,
            overwrite=overwrite, events=events, workers=workers, frame_rate=frame_rate,
        )  # fmt: skip
    if not quiet:
        click.echo(
            f"{len(report.written)} video(s) written to {output}, {len(report.skipped)} skipped "
            f"(already complete), {len(report.failures)} failed",
            err=True,
        )
    if report.failures:
        sys.exit(1)
