"""What several commands share: the stdout console, library warnings as lines, loading a
model or a dataset from the options."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console

from ..model import VideoModel
from ..options import ModelOptions
from ..train import DatasetSplit, load_annotation, load_dataset


def out_console() -> Console:
    """stdout for tables: the terminal's width, or wide enough not to fold lines in a pipe or
    a file (rich would wrap them at 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=240)


@contextmanager
def echo_warnings(*, quiet: bool = False) -> Iterator[None]:
    """Print the library warnings (random weights, a small epoch, ...) raised inside as one
    line each, when they are raised."""

    def show(message: Warning | str, *_: object, **__: object) -> None:
        if not quiet:
            click.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def load(network: ModelOptions, *, quiet: bool = False) -> VideoModel:
    """Load the model, printing its warnings and what weights it runs."""
    with echo_warnings(quiet=quiet):
        vm = network.load()
    if not quiet:
        click.echo(f"weights: {vm.meta.describe()}", err=True)
    return vm


def load_split(
    dataset: Path, val_split: float, seed: int, train_list: Path | None, val_list: Path | None,
    classes_file: Path | None, csv_file: Path | None, annotation_file: Path | None = None,
    frame_rate: float | None = None,
) -> DatasetSplit:  # fmt: skip
    """DATASET as the dataset options of train and evaluate read it (``--annotation``:
    Hara et al.'s JSON over the frame root DATASET)."""
    if annotation_file is not None:
        named = {"--train-list": train_list, "--val-list": val_list, "--classes": classes_file,
                 "--csv": csv_file}  # fmt: skip
        given = [name for name, value in named.items() if value is not None]
        if given:
            raise click.UsageError(f"--annotation names the split and classes: drop {given[0]}")
        with echo_warnings():
            return load_annotation(dataset, annotation_file, frame_rate=frame_rate)
    return load_dataset(
        dataset, val_split=val_split, seed=seed, train_list=train_list, val_list=val_list,
        classes_file=classes_file, csv=csv_file, frame_rate=frame_rate,
    )  # fmt: skip
