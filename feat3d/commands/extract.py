"""``feat3d extract``: features of videos into HDF5, JSON Lines or npy."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..cli import (
    clip_options,
    format_option,
    model_options,
    output_option,
    overwrite_option,
    two_stream_options,
)  # fmt: skip
from ..clikit import ShardParam
from ..io.writers import FORMATS
from ..model import LAYERS
from ..options import ClipOptions, ModelOptions, OutputOptions, RunOptions, TwoStreamOptions
from ..run.distribute import extract_distributed, rank_from_env
from .common import load
from .progress import CliEvents


@click.command("extract")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@output_option("HDF5 file (.h5), JSON Lines file (.json/.jsonl) or a folder for npy.")
@format_option(list(FORMATS),
               "Output format. Default: from the output's extension (a folder → npy).")  # fmt: skip
@model_options
@click.option("--layer", type=click.Choice(LAYERS), default=None,
              help="conv5 (last stage, pooled; mixed_5c for i3d), pool5, fc6/fc7 (C3D), logits "
              "or probs; pool5_rgb/pool5_flow with i3d --streams rgb,flow. Default: "
              "the network's feature layer (pool5; fc6 for C3D). `feat3d models` lists each "
              "one's width.")  # fmt: skip
@click.option(
    "--no-pool",
    is_flag=True,
    help="With --layer conv5 (mixed_5c for i3d): keep the (D, t, h, w) map.",
)
@click.option("--average-only", is_flag=True, help="Store only the per-video mean, not each clip.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="Stored feature type.")  # fmt: skip
@clip_options
@overwrite_option("Replace the output. Without it, videos already complete are skipped (resume).")
@click.option("--shard", type=ShardParam(), default=None, metavar="I/N",
              help="Process only shard I of N (0-based) of the inputs, chosen by a hash of each "
              "video's key: stable across runs and machines. Merge the parts with "
              "`feat3d merge`.")  # fmt: skip
@click.option("--devices", default=None, metavar="DEV,DEV,...",
              help="One process per device (e.g. cuda:0,cuda:1), each on a shard; the parts are "
              "merged into OUTPUT (HDF5) at the end. Under torchrun, each rank does this on "
              "its own.")  # fmt: skip
@click.option("--errors", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.jsonl",
              help="Append one JSON line per failed video (video, source, error).")  # fmt: skip
@two_stream_options
def extract_command(
    inputs: tuple[str, ...], network: ModelOptions, clips: ClipOptions,
    two_stream: TwoStreamOptions, output: Path, output_format: str | None, layer: str | None,
    no_pool: bool, average_only: bool, dtype: str, overwrite: bool, errors: Path | None,
    batch_size: int, workers: int | str, shard: tuple[int, int] | None, devices: str | None,
    quiet: bool, verbose: bool,
) -> None:  # fmt: skip
    """Extract per-clip and per-video features of INPUTS (files, folders, @list.txt).

    \b
    Examples:
      feat3d extract videos/ -o feats.h5
      feat3d extract a.mp4 b.mkv -o feats/ --format npy --layer logits
      feat3d extract @todo.txt -o feats.h5 -m resnet-34 -w resnet-34-kinetics.pth
    """
    out = OutputOptions(
        path=output, format=output_format, layer=layer, pool=not no_pool, dtype=dtype,
        average_only=average_only, overwrite=overwrite, errors=errors,
    )  # fmt: skip
    split = tuple(name.strip() for name in devices.split(",") if name.strip()) if devices else None
    run = RunOptions(batch_size=batch_size, workers=workers, shard=shard, devices=split)
    ranked = rank_from_env()
    silent = quiet or (ranked is not None and ranked[0] > 0)  # torchrun: rank 0 speaks
    model = network if run.devices else load(network, quiet=silent)  # devices: one load each
    with CliEvents(quiet=silent, verbose=verbose, what="extract") as events:
        report = extract_distributed(
            inputs, out, model=model, clips=clips, run=run, two_stream=two_stream, events=events
        )
    if not quiet:
        for failure in report.failures if report.parts else ():  # the parts ran unseen
            click.echo(f"error: {failure.source}: {failure.message}", err=True)
        click.echo(report.summary(), err=True)
    if report.failures:
        sys.exit(1)
