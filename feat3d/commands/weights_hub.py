"""``feat3d weights download|remove``: published weights fetched into, or deleted from, the
caches."""

from __future__ import annotations

import sys

import click
from click.shell_completion import CompletionItem

from ..backbones import list_weights
from ..backbones.hub import download_weights, known_weights, remove_weights
from ..cli import quiet_option


def _complete_registered(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    names = [row.name for row in known_weights() if row.path is not None]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def _complete_downloadable(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    names = [named.name for named in list_weights()]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


@click.command("download")
@click.argument("name", shell_complete=_complete_downloadable)
@quiet_option("No progress bar.")
def download_command(name: str, quiet: bool) -> None:
    """Download torchvision's Kinetics-400 weights NAME into the torch hub cache and check
    their hash. For checkpoints shared on Google Drive, print where to get the file and the
    `feat3d weights add` command to run.

    \b
    Examples:
      feat3d weights download r3d_18.kinetics400_v1
      feat3d weights download r2plus1d_18.kinetics400_v1 -q
    """
    path = download_weights(name, progress=not quiet and sys.stderr.isatty())
    click.echo(f"{name}: {path}")


@click.command("remove")
@click.argument("name", shell_complete=_complete_registered)
def remove_command(name: str) -> None:
    """Forget weights NAME and delete its file from the weights home (a linked file's target
    stays), or delete torchvision's download from the torch hub cache.

    \b
    Example:
      feat3d weights remove resnet-34-kinetics
    """
    for path in remove_weights(name):
        click.echo(f"removed {path}")
