"""The command line's machinery: its param types, and the lazy group that imports a command
on first use and maps feat3d's errors to exit statuses. ``feat3d.cli`` builds the group."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from .config import add_config_option_to
from .errors import Feat3dError
from .io.discover import InputError
from .io.merge import parse_shard
from .options import OptionsError, parse_workers
from .urls import is_url, mask_url


class ShardParam(click.ParamType):
    """``I/N``: shard I (0-based) of N."""

    name = "I/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_shard(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


class LocationParam(click.Path):
    """A path, or with ``urls`` a URL (``s3://``, ``gs://``, ...), kept as a ``str``
    (``file://`` URLs are local paths); without ``urls`` a URL is refused in one line."""

    def __init__(self, *, urls: bool = True, **path: Any):
        super().__init__(**path)
        self.urls = urls

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.lower().startswith("file://"):
            value = value[len("file://") :]
        elif is_url(value):
            if not self.urls:
                self.fail(f"{mask_url(value)}: this command takes local paths only", param, ctx)
            return value
        return super().convert(value, param, ctx)


class SizeParam(click.ParamType):
    """``112`` (short side, or a square's side) or ``128x171`` (exact height × width)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, tuple)):
            return value
        text = str(value).lower().strip()
        try:
            if "x" in text:
                height, width = (int(part) for part in text.split("x", 1))
                if height < 1 or width < 1:
                    raise ValueError
                return (height, width)
            size = int(text)
            if size < 1:
                raise ValueError
            return size
        except ValueError:
            self.fail(
                f"{value!r} is not a size: give N (short side) or HxW, e.g. 128x171", param, ctx
            )


class WorkersParam(click.ParamType):
    """``N`` (a count ≥ 0) or ``auto``; the API resolves ``auto`` for where the work runs."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_workers(value)
        except OptionsError as error:
            self.fail(str(error), param, ctx)


class LazyGroup(click.Group):
    """A group whose commands are imported on first use from ``"module:attribute"`` specs
    (click's lazy-loading pattern): running one command imports only that one.

    ``commands`` (click's public mapping) still holds every command: reading it imports the
    ones not loaded yet. Each loaded command (and its subcommands) gets ``--config``.
    """

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str], **kwargs: Any) -> None:
        self._loaded: dict[str, click.Command] = {}
        self.lazy_commands = dict(lazy_commands)
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def commands(self) -> dict[str, click.Command]:
        for name in self.lazy_commands:
            self._load(name)
        return self._loaded

    @commands.setter
    def commands(self, value: Mapping[str, click.Command]) -> None:
        self._loaded = dict(value)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        self._loaded[name or cmd.name or ""] = cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self._loaded, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands and cmd_name not in self._loaded:
            return None
        return self._load(cmd_name)

    def _load(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, attribute = self.lazy_commands[name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            add_config_option_to(command)
            self._loaded[name] = command
        return self._loaded[name]

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; feat3d's errors become one-line messages with their exit status."""
        try:
            return super().invoke(ctx)
        except InputError as error:
            raise click.BadParameter(str(error), param_hint="INPUTS") from error
        except Feat3dError as error:
            exception = click.ClickException(str(error))
            exception.exit_code = error.exit_code
            raise exception from error
        except ValueError as error:
            raise click.ClickException(str(error)) from error
