"""``--config FILE.toml``: option values from a TOML file, between defaults and the command line.

A file's keys are option names, spelled as on the command line without the dashes
(``clip-len = 16``) or with underscores (``clip_len = 16``). Keys at the top level apply to
every command that has that option; a table named after a command applies to that command
only and wins over the top level (``[train]``, or ``[weights.add]`` for a subcommand). The
values become click's ``default_map``, so the command line still wins and the file wins over
the defaults. A key that is an option of no command, a key in a command's table that the
command does not have, and a table that names no command are errors naming the key and file.

Example:
    ``run.toml``::

        batch-size = 4
        [train]
        lr = 0.01
        epochs = 50

    ``feat3d train data/ -o runs/a --config run.toml --epochs 60`` trains with lr 0.01, batch
    size 4 and 60 epochs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["add_config_option", "add_config_option_to", "config_defaults", "read_config"]

CONFIG_HELP = (
    "TOML file of option values (`lr = 0.1`, `clip-len = 16`, or a [COMMAND] table); the "
    "command line wins over it, it wins over the defaults."
)


def read_config(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        click.BadParameter: Unreadable file or invalid TOML; one line naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror or exc}", param_hint="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path}: not valid TOML ({exc})", param_hint="--config") from None


def _option_names(command: click.Command) -> dict[str, str]:
    """Every spelling of an option's name → the parameter name ``default_map`` uses."""
    names: dict[str, str] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None or param.name == "config":
            continue
        for spelling in (param.name, param.name.replace("_", "-")):
            names[spelling] = param.name
        for opt in param.opts:
            if opt.startswith("--"):
                names[opt[2:]] = param.name
                names[opt[2:].replace("-", "_")] = param.name
    return names


def _walk(group: click.Group) -> Iterator[click.Command]:
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from _walk(command)


def _path_of(ctx: click.Context) -> list[str]:
    """Command names from below the root to ``ctx``'s command: ``["weights", "add"]``."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return names[::-1]


def config_defaults(
    data: Mapping[str, Any], ctx: click.Context, *, source: str | Path
) -> dict[str, Any]:
    """The ``default_map`` that a parsed config file gives the command of ``ctx``.

    Args:
        data: The parsed TOML.
        ctx: The context of the command being run (its parents give the table path).
        source: The file, for messages.

    Returns:
        Parameter name → value.

    Raises:
        click.BadParameter: An unknown key or table, naming it and the file.
    """
    root = ctx.find_root().command
    path = _path_of(ctx)
    own = _option_names(ctx.command)
    anywhere: set[str] = set()
    if isinstance(root, click.Group):
        for command in _walk(root):
            anywhere.update(_option_names(command))

    def fail(message: str) -> click.BadParameter:
        return click.BadParameter(f"{source}: {message}", param_hint="--config")

    defaults: dict[str, Any] = {}
    table: Any = data
    group: click.Command | None = root
    for depth in range(len(path) + 1):
        here = "at the top level" if depth == 0 else f"in [{'.'.join(path[:depth])}]"
        innermost = depth == len(path)
        for key, value in table.items():
            if isinstance(value, dict):
                sub = group.commands.get(key) if isinstance(group, click.Group) else None
                if sub is None:
                    raise fail(f"unknown table [{'.'.join([*path[:depth], key])}]: no such command")
                continue
            if key in own:
                defaults[own[key]] = value
            elif innermost:
                raise fail(f"unknown key {key!r} {here}: not an option of {ctx.command_path}")
            elif key not in anywhere:
                raise fail(f"unknown key {key!r} {here}: not an option of any command")
        if innermost:
            break
        table = table.get(path[depth], {})
        group = group.commands.get(path[depth]) if isinstance(group, click.Group) else None
    return defaults


def _apply_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is None:
        return
    defaults = config_defaults(read_config(value), ctx, source=value)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def config_option() -> click.Option:
    """A ``--config FILE`` option that fills ``ctx.default_map`` before other options parse."""
    return click.Option(
        ["--config"],
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        is_eager=True,  # processed first, so the other options see the defaults it sets
        expose_value=False,
        callback=_apply_config,
        metavar="FILE.toml",
        help=CONFIG_HELP,
    )


def add_config_option(group: click.Group) -> None:
    """Give every command under ``group`` (subgroups included) a ``--config`` option."""
    for command in _walk(group):
        _give_config_option(command)


def add_config_option_to(command: click.Command) -> None:
    """Give ``command`` and, for a group, every command under it a ``--config`` option (a
    lazily loaded command gets it when it is loaded)."""
    _give_config_option(command)
    if isinstance(command, click.Group):
        add_config_option(command)


def _give_config_option(command: click.Command) -> None:
    if not any(param.name == "config" for param in command.params):
        command.params.append(config_option())
