"""``feat3d weights convert|add``: checkpoint files converted, checked and added to the home."""

from __future__ import annotations

from pathlib import Path

import click

from ..backbones import convert_checkpoint
from ..backbones.hub import add_weights
from ..cli import model_option, trust_option
from .common import echo_warnings

_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("convert")
@click.argument("source", type=_file)
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@trust_option("Allow full unpickling of SOURCE (can run code hidden in it).")
def convert_command(source: Path, target: Path, trust_checkpoint: bool) -> None:
    """Convert any supported checkpoint to feat3d's format: TARGET.safetensors (never runs
    code when loaded) or TARGET.pt, with its metadata (classes, normalization, clip length).

    \b
    Examples:
      feat3d weights convert resnet-34-kinetics.pth resnet-34-kinetics.safetensors
      feat3d weights convert r3d18_K_200ep.pth r3d18.pt
    """
    with echo_warnings():
        meta = convert_checkpoint(source, target, trust=trust_checkpoint)
    click.echo(f"{source} → {target}: {meta.arch}, {len(meta.categories)} classes")


@click.command("add")
@click.argument("file", type=_file)
@click.option("--name", "-n", default=None,
              help="The name for --weights. Default: the file stem (torchvision's tag for its "
              "files).")  # fmt: skip
@model_option(help="The architecture FILE must hold. Default: read from its keys and shapes.")
@click.option("--link", is_flag=True, help="Symlink to FILE instead of copying it.")
@click.option("--force", is_flag=True, help="Replace weights already registered as NAME.")
@trust_option("Allow full unpickling of FILE (can run code hidden in it).")
def add_command(
    file: Path, name: str | None, model: str | None, link: bool, force: bool,
    trust_checkpoint: bool,
) -> None:  # fmt: skip
    """Verify checkpoint FILE and copy it into the weights home under NAME, so that
    `--weights NAME` works in every command. FILE must load strictly into an architecture,
    and match the published checksum (torchvision) or layout (Hara, C3D) when NAME is a
    published one. The home is $FEAT3D_HOME, else <torch hub dir>/feat3d.

    \b
    Examples:
      feat3d weights add resnet-34-kinetics.pth
      feat3d weights add ~/Downloads/r3d18_K_200ep.pth --link
      feat3d weights add r3d_18-b3b3357e.pth --name r3d_18.kinetics400_v1
    """
    with echo_warnings():
        entry = add_weights(
            file, name=name, model=model, link=link, replace=force, trust=trust_checkpoint
        )
    how = "linked" if entry.linked else "copied"
    click.echo(
        f"added {entry.name}: {entry.arch}, {entry.classes} classes, {entry.format} format, "
        f"sha256 {entry.sha256[:12]}… ({how} to {entry.path}); use --weights {entry.name}"
    )
