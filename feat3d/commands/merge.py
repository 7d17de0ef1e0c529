"""``feat3d merge``: HDF5 outputs of extract (the shards of one run) into one file."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import overwrite_option
from ..io.merge import merge_outputs


@click.command("merge")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@overwrite_option("Replace OUTPUT instead of adding to it.")
def merge_command(output: Path, parts: tuple[Path, ...], overwrite: bool) -> None:
    """Merge HDF5 outputs of `feat3d extract` (e.g. the shards of one run) into OUTPUT.

    The parts must have been made with the same options; a video in two parts must have the
    same content in both (else nothing is written); a success in one part wins over an error
    record in another. A part left by a killed run (with its journal) is completed first.

    \b
    Examples:
      feat3d merge feats.h5 feats.0.h5 feats.1.h5 feats.2.h5
      feat3d merge all.h5 node*/part.h5 --overwrite
    """
    report = merge_outputs(output, list(parts), overwrite=overwrite)
    for part in report.parts:
        click.echo(
            f"{part.path}: {part.videos} videos, {part.duplicates} duplicates skipped, "
            f"{part.errors} errors",
            err=True,
        )
    click.echo(
        f"{output}: {report.videos} videos, {report.duplicates} duplicates skipped, "
        f"{report.errors} error records",
        err=True,
    )
