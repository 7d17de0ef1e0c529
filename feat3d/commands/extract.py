"""``feat3d extract``: features of videos into HDF5, JSON Lines, npy or Parquet."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..cli import format_option, model_options, output_option, overwrite_option
from ..cli_video import (
    clip_options,
    engine_options,
    feature_options,
    time_pool_options,
    two_stream_options,
)
from ..clikit import LocationParam
from ..io.writers import FORMATS
from ..options import (
    ClipOptions,
    ModelOptions,
    OutputOptions,
    PoolOptions,
    RunOptions,
    TwoStreamOptions,
)
from ..run.distribute import extract_distributed, rank_from_env
from .common import load
from .progress import CliEvents


@click.command("extract")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@output_option(
    "HDF5 file (.h5), JSON Lines file (.json/.jsonl), or a folder for npy or Parquet "
    "(.parquet); or a URL (s3://, gs://, ...): Parquet parts are written there directly, "
    "the other formats locally and uploaded at the end.",
    urls=True,
)
@format_option(list(FORMATS),
               "Output format. Default: from the output's extension (.parquet → parquet, "
               "another folder → npy).")  # fmt: skip
@model_options
@feature_options
@time_pool_options
@clip_options
@overwrite_option("Replace the output. Without it, videos already complete are skipped (resume).")
@click.option("--errors", type=LocationParam(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.jsonl",
              help="Append one JSON line per failed video (video, source, error); a URL is "
              "uploaded at the end.")  # fmt: skip
@engine_options
@two_stream_options
def extract_command(
    inputs: tuple[str, ...], network: ModelOptions, clips: ClipOptions,
    two_stream: TwoStreamOptions, output: Path | str, output_format: str | None, layer: str | None,
    no_pool: bool, average_only: bool, crop_reduce: str, dtype: str, overwrite: bool,
    errors: Path | str | None, batch_size: int, workers: int | str,
    shard: tuple[int, int] | None, devices: str | None, quiet: bool, verbose: bool,
    part_rows: int | None, engine: dict[str, Any], pooling: PoolOptions | None,
) -> None:  # fmt: skip
    """Extract per-clip and per-video features of INPUTS (files, folders, @list.txt).

    \b
    Examples:
      feat3d extract videos/ -o feats.h5
      feat3d extract a.mp4 b.mkv -o feats/ --format npy --layer logits
      feat3d extract @todo.txt -o feats.h5 -m resnet-34 -w resnet-34-kinetics.pth
      feat3d extract videos/ -o frames.h5 --window centred   # one feature per frame
      feat3d extract videos/ -o feats.h5 --crops 10
      feat3d extract videos/ -o ucf_crime.h5 --segments 32   # 32 rows per video
      feat3d extract videos/ -o feats.parquet --dtype float16
      feat3d extract @s3_list.txt -o s3://bucket/feats.parquet --engine ray --address auto
    """
    out = OutputOptions(
        path=output, format=output_format, layer=layer, pool=not no_pool, dtype=dtype,
        average_only=average_only, overwrite=overwrite, errors=errors, crop_reduce=crop_reduce,
        retries=clips.retries, part_rows=part_rows, pooling=pooling,
    )  # fmt: skip
    split = tuple(name.strip() for name in devices.split(",") if name.strip()) if devices else None
    run = RunOptions(batch_size=batch_size, workers=workers, shard=shard, devices=split, **engine)
    ranked = rank_from_env()
    silent = quiet or (ranked is not None and ranked[0] > 0)  # torchrun: rank 0 speaks
    # --devices and Ray load the model in each process or actor
    model = network if run.devices or run.engine == "ray" else load(network, quiet=silent)
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
