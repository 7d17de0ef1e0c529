"""``feat3d models``: every architecture, its size, cost, layers and published weights."""

from __future__ import annotations

import json

import click
from rich.table import Table

from ..backbones.published import describe_models
from ..cli import json_option
from .common import out_console


@click.command("models")
@json_option("Print the table as JSON.")
@click.argument("pattern", required=False)
def models_command(as_json: bool, pattern: str | None) -> None:
    """List every architecture: parameters, GMACs per clip, feature layers and their widths,
    default input, and the published weights it loads. PATTERN filters names (fnmatch).

    \b
    Examples:
      feat3d models
      feat3d models 'resnext-*' --json
    """
    rows = describe_models(pattern)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table(title="feat3d models (GMACs: multiply-adds per clip at the default input)")
    for column in ("model", "params (M)", "GMACs", "layers: width", "input", "published weights"):
        table.add_column(column, overflow="fold")
    for row in rows:
        frames, size = row["default_input"]
        stride = row.get("frame_stride", 1)
        by_width: dict[int, list[str]] = {}
        for layer, width in row["layers"].items():
            if layer != "probs":
                by_width.setdefault(width, []).append(layer)
        table.add_row(
            row["name"],
            f"{row['num_params'] / 1e6:.1f}" if row["num_params"] else "",
            f"{row['gmacs']:.1f}" if row["gmacs"] else "",
            ", ".join(f"{'/'.join(names)}: {width}" for width, names in by_width.items()),
            f"{frames}×{size}²" + (f", stride {stride}" if stride > 1 else ""),
            " ".join(row["weights"]) or "–",
        )
    out_console().print(table)
