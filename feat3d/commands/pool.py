"""``feat3d pool``: stored clip features re-pooled in time, without decoding again."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..cli import (
    format_option,
    output_option,
    overwrite_option,
    quiet_option,
)
from ..cli_video import (
    time_pool_options,
)
from ..io.writers import FORMATS
from ..options import OutputOptions, PoolOptions
from ..run.pool import pool_features


@click.command("pool")
@click.argument("feats", type=click.Path(exists=True, path_type=Path))
@output_option("HDF5 file (.h5), JSON Lines file (.json/.jsonl) or a folder for npy.")
@format_option(list(FORMATS),
               "Output format. Default: from the output's extension (a folder → npy).")  # fmt: skip
@time_pool_options
@overwrite_option("Replace the output. Without it, videos already complete are skipped (resume).")
@quiet_option("No summary line.")
def pool_command(
    feats: Path, output: Path, output_format: str | None, pooling: PoolOptions | None,
    overwrite: bool, quiet: bool,
) -> None:  # fmt: skip
    """Re-pool the per-clip features stored in FEATS (an extract output) in time.

    Each output row records the span it covers (segments, timestamps); the run's options
    and the pooling options are recorded. Videos that failed in FEATS stay failures.

    \b
    Examples:
      feat3d pool feats.h5 -o ucf_crime.h5 --segments 32
      feat3d pool feats.h5 -o per_second.jsonl --every 1
      feat3d pool feats/ -o frames/ --per-frame --interpolate
    """
    options = pooling or PoolOptions()  # none chosen: refused, naming the three options
    out = OutputOptions(path=output, format=output_format, overwrite=overwrite)
    report = pool_features(feats, out, options)
    for failure in report.failures:
        click.echo(f"error: {failure.key}: {failure.message}", err=True)
    if not quiet:
        click.echo(report.summary(), err=True)
    if report.failures:
        sys.exit(1)
