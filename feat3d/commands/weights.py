"""``feat3d weights``: the table of known checkpoints, and the group of its subcommands."""

from __future__ import annotations

import json
import urllib.parse

import click
from rich.markup import escape
from rich.table import Table

from ..backbones import list_weights, weights_cache_path
from ..backbones.hub import known_weights, weights_home
from ..cli import json_option
from .common import out_console
from .weights_files import add_command, convert_command
from .weights_hub import download_command, remove_command


@click.group("weights", invoke_without_command=True)
@json_option("Print the table as JSON.")
@click.pass_context
def weights_group(ctx: click.Context, as_json: bool) -> None:
    """List every checkpoint feat3d knows (published ones and those added), where to get it,
    its SHA-256 when known and its local file; add, download, remove or convert one.

    \b
    Examples:
      feat3d weights
      feat3d weights download r3d_18.kinetics400_v1
      feat3d weights add resnet-34-kinetics.pth
      feat3d weights convert resnet-34-kinetics.pth resnet-34-kinetics.safetensors
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = known_weights()
    if as_json:
        click.echo(json.dumps([row.to_json() for row in rows], indent=1))
        return
    table = Table(title="checkpoints (--weights NAME once local, or --weights PATH)")
    for column in ("name", "model", "classes", "sampling", "source", "sha256", "local file"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "model"))
    for row in rows:
        sha = f"{row.sha256[:16]}…" if row.sha256 else None
        source = urllib.parse.urlparse(row.download).netloc or row.download  # URLs: --json
        table.add_row(*(escape(cell) for cell in (
            row.name, row.arch, str(row.classes),
            row.sampling or "–", source, sha or "–",
            str(row.path) if row.path else "–",
        )))  # fmt: skip
    out_console().print(table)
    click.echo(f"weights home: {weights_home()} (set FEAT3D_HOME to move it)")
    click.echo(f"torch.hub cache: {weights_cache_path(list_weights()[0]).parent}")


for _command in (convert_command, add_command, download_command, remove_command):
    weights_group.add_command(_command)
