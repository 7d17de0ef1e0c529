"""``feat3d info``: what an output or a checkpoint file holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cli import json_option, trust_option
from ..info import describe
from .common import echo_warnings


@click.command("info")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, path_type=Path))
@click.option("--video", "video_key", metavar="NAME", default=None,
              help="One video of an output (its key): attributes and each clip's frames and "
              "seconds.")  # fmt: skip
@json_option("Print as JSON.")
@trust_option("Allow full unpickling (runs its code).")
def info_command(path: Path, video_key: str | None, as_json: bool, trust_checkpoint: bool) -> None:
    """What FILE holds: an extract output (HDF5, JSON Lines, npy folder) — its options,
    videos, clips, feature size, failures, pending journal — or a checkpoint — architecture,
    format, classes, normalization, clip length, parameters, SHA-256.

    \b
    Examples:
      feat3d info feats.h5
      feat3d info feats.h5 --video class_a/clip01.mp4
      feat3d info runs/motion/best.pt --json
    """
    with echo_warnings():
        result = describe(path, video=video_key, trust=trust_checkpoint)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
    else:
        click.echo(result.to_text())
