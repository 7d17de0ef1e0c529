"""``feat3d merge``: outputs of extract (the shards of one run) into one HDF5 file or one
Parquet folder."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import overwrite_option
from ..clikit import LocationParam
from ..io.merge import merge_outputs
from ..urls import mask_url


@click.command("merge")
@click.argument("output", type=LocationParam(path_type=Path))
@click.argument("parts", nargs=-1, required=True, type=LocationParam(path_type=Path))
@overwrite_option("Replace OUTPUT instead of adding to it.")
def merge_command(
    output: Path | str, parts: tuple[Path | str, ...], overwrite: bool
) -> None:  # fmt: skip
    """Merge outputs of `feat3d extract` (e.g. the shards of one run) into OUTPUT: an HDF5
    file, or a Parquet folder when OUTPUT is named *.parquet.

    The parts must have been made with the same options; a video in two parts must have the
    same content in both (else nothing is written); a success in one part wins over an error
    record in another. A part left by a killed run (with its journal) is completed first.
    HDF5 takes parts of any format (arrays written as stored). A Parquet OUTPUT takes Parquet
    parts (local or URLs) and copies their committed part files; it adds to an existing
    OUTPUT made with the same options, and a killed merge resumes.

    \b
    Examples:
      feat3d merge feats.h5 feats.0.h5 feats.1.h5 feats.2.h5
      feat3d merge all.h5 node*/part.h5 --overwrite
      feat3d merge s3://bucket/feats.parquet shard0.parquet s3://bucket/shard1.parquet
      feat3d merge feats.h5 feats.parquet
    """
    report = merge_outputs(output, list(parts), overwrite=overwrite)
    for part in report.parts:
        click.echo(
            f"{mask_url(part.path)}: {part.videos} videos, {part.duplicates} duplicates skipped, "
            f"{part.errors} errors",
            err=True,
        )
    click.echo(
        f"{mask_url(output)}: {report.videos} videos, {report.duplicates} duplicates skipped, "
        f"{report.errors} error records",
        err=True,
    )
