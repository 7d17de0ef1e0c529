"""``feat3d info``: what an output or a checkpoint file holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cli import json_option, trust_option
from ..clikit import LocationParam
from ..info import OutputInfo, describe, path_or_journal_exists
from ..urls import is_url
from .common import echo_warnings


@click.command("info")
@click.argument("path", metavar="FILE", type=LocationParam(path_type=Path))
@click.option("--video", "video_key", metavar="NAME", default=None,
              help="One video of an output (its key): attributes and each clip's frames and "
              "seconds.")  # fmt: skip
@click.option(
    "--all",
    "all_videos",
    is_flag=True,
    help="List every video of an output (default: the first 20 and how many more).",
)
@json_option("Print as JSON (with every video).")
@trust_option("Allow full unpickling (runs its code).")
def info_command(
    path: Path | str, video_key: str | None, all_videos: bool, as_json: bool, trust_checkpoint: bool
) -> None:
    """What FILE holds: an extract output (HDF5, JSON Lines, npy folder) — its options,
    videos (clips and seconds of each), feature size, failures, pending journal — or a
    checkpoint — architecture, format, classes, normalization, clip length, parameters,
    SHA-256.

    FILE may be a Parquet folder at a URL (s3://bucket/feats.parquet).

    An HDF5 output of which only FILE.journal exists (a run stopped before it first wrote
    FILE) is described from the journal; extract with the same options resumes that run.

    \b
    Examples:
      feat3d info feats.h5
      feat3d info feats.h5 --all
      feat3d info feats.h5 --video class_a/clip01.mp4
      feat3d info runs/motion/best.pt --json
      feat3d info s3://bucket/feats.parquet
    """
    if not is_url(path) and not path_or_journal_exists(path):
        raise click.BadParameter(f"Path {str(path)!r} does not exist.", param_hint="'FILE'")
    with echo_warnings():
        result = describe(path, video=video_key, trust=trust_checkpoint)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
    elif isinstance(result, OutputInfo):
        click.echo(result.to_text(all_videos=all_videos))
    else:
        click.echo(result.to_text())
