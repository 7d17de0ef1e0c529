"""``feat3d extract``: features of videos into HDF5, JSON Lines or npy."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..cli import (
    ShardParam,
    clip_options,
    format_option,
    model_options,
    output_option,
    overwrite_option,
    two_stream_options,
)  # fmt: skip
from ..extraction import extract
from ..io.writers import FORMATS
from ..model import LAYERS
from ..shards import extract_on_devices, extract_rank, rank_from_env
from .common import load
from .progress import CliEvents


@click.command("extract")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@output_option("HDF5 file (.h5), JSON Lines file (.json/.jsonl) or a folder for npy.")
@format_option(list(FORMATS),
               "Output format. Default: from the output's extension (a folder → npy).")  # fmt: skip
@model_options
@click.option("--layer", type=click.Choice(LAYERS), default=None,
              help="conv5 (last stage, pooled), pool5, fc6/fc7 (C3D), logits or probs. Default: "
              "the network's feature layer (pool5; fc6 for C3D). `feat3d models` lists each "
              "one's width.")  # fmt: skip
@click.option("--no-pool", is_flag=True, help="With --layer conv5: keep the (D, t, h, w) map.")
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
    inputs: tuple[str, ...], output: Path, output_format: str | None, model: str | None,
    weights: str, device: str, precision: str, num_classes: int | None, trust_checkpoint: bool,
    compile_model: bool, no_pool: bool, overwrite: bool, shard: tuple[int, int] | None,
    devices: str | None, quiet: bool, verbose: bool, **options: Any,
) -> None:  # fmt: skip
    """Extract per-clip and per-video features of INPUTS (files, folders, @list.txt).

    \b
    Examples:
      feat3d extract videos/ -o feats.h5
      feat3d extract a.mp4 b.mkv -o feats/ --format npy --layer logits
      feat3d extract @todo.txt -o feats.h5 -m resnet-34 -w resnet-34-kinetics.pth
    """
    loading = dict(
        weights=weights, precision=precision, trust_checkpoint=trust_checkpoint,
        num_classes=num_classes,
    )  # fmt: skip
    options.update(pool=not no_pool, overwrite=overwrite, format=output_format)
    # run layer: the choice between --devices, torchrun and a plain run.
    ranked = rank_from_env()
    if shard is not None and (devices is not None or ranked is not None):
        raise click.UsageError("--shard and --devices/torchrun both split the inputs: use one")
    if devices is not None:
        chosen = [name.strip() for name in devices.split(",") if name.strip()]
        parts = extract_on_devices(
            inputs, output, chosen, model=model, compile=compile_model, **loading, **options
        )
        if not quiet:
            click.echo("\n".join([*(line for line, _ in parts), f"merged into {output}"]), err=True)
        sys.exit(1 if sum(failed for _, failed in parts) else 0)
    rank, world = ranked or (0, 1)
    silent = quiet or rank > 0  # under torchrun, rank 0 loads and shows progress aloud
    vm = load(model, device=device, compile_model=compile_model, quiet=silent, **loading)
    with CliEvents(quiet=silent, verbose=verbose, what="extract") as events:
        if ranked is not None:
            report = extract_rank(inputs, output, rank=rank, world=world, model=vm, events=events,
                                  **options)  # fmt: skip
        else:
            report = extract(inputs, output, model=vm, events=events, shard=shard, **options)
    if not quiet:
        click.echo(report.summary(), err=True)
    if report.failures:
        sys.exit(1)
