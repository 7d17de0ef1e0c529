"""``feat3d train``: train or fine-tune a model on a dataset with Hara et al.'s recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import train as training
from ..cli import (
    compile_option,
    dataset_options,
    device_option,
    model_option,
    output_option,
    precision_option,
    pretrained_option,
    quiet_option,
    workers_option,
)  # fmt: skip
from . import common
from .progress import EpochProgress
from .recipe import recipe_options
from .stages import explicit_values, train_stage


@click.command("train")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_option("Run folder: config.json, metrics.csv, last.pt, best.pt, train_state.pt.",
               kind="folder")  # fmt: skip
@dataset_options
@model_option("resnet-18", help="Architecture to train from scratch.")
@pretrained_option()
@recipe_options
@workers_option("Decoding processes.")
@device_option()
@precision_option("auto")
@compile_option()
@click.option("--val-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Validate every N epochs.")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last epoch.")
@quiet_option("Only the final line.")
def train_command(
    dataset: Path, output: Path, val_split: float, seed: int, train_list: Path | None,
    val_list: Path | None, classes_file: Path | None, csv_file: Path | None, stage: str | None,
    flow: Path | None, init_2d: Path | None, max_steps: int | None, compile_model: bool,
    resume: bool, quiet: bool, annotation_file: Path | None, **recipe: Any,
) -> None:  # fmt: skip
    """Train or fine-tune a model on DATASET with Hara et al.'s recipe.

    DATASET is a folder with one sub-folder per class (split by --val-split, or with train/
    and val/ sub-folders), or the root that --train-list/--val-list/--csv paths are relative to.

    \b
    Examples:
      feat3d train motion/ -o runs/motion -m resnet-10 --epochs 20 -b 8 --accumulate 1
      feat3d train ucf101/ --train-list trainlist01.txt --val-list testlist01.txt \\
          --classes classInd.txt --pretrained resnet-34-kinetics.pth -o runs/ucf
      feat3d train motion/ -o runs/motion --resume
      feat3d train jpg/ --annotation ucf101_01.json -o runs/ucf -m resnet-18
    """
    if isinstance(recipe["crop"], tuple):
        raise click.BadParameter("train crops squares: give one side N", param_hint="--crop")
    if compile_model:  # fit() compiles nothing yet: refused rather than ignored
        raise click.UsageError("--compile: train does not compile the network yet")
    split = common.load_split(dataset, val_split, seed, train_list, val_list, classes_file,
                              csv_file, annotation_file, recipe["frame_rate"])  # fmt: skip
    if stage is not None or training.trains_in_stages(recipe["model"]):
        train_stage(split, output, stage=stage, flow=flow, init_2d=init_2d, max_steps=max_steps,
                    seed=seed, quiet=quiet, resume=resume, explicit=explicit_values(),
                    **recipe)  # fmt: skip
        return
    options = training.TrainOptions(**{**recipe, "scales": _floats(recipe["scales"])}, seed=seed)
    if not quiet:
        click.echo(
            f"{len(split.classes)} classes, {len(split.train)} training and "
            f"{len(split.val)} validation videos → {output}",
            err=True,
        )
    with common.echo_warnings(quiet=quiet), EpochProgress(quiet=quiet) as progress:
        report = training.fit(
            split, output, options, resume=resume, on_epoch=progress.epoch,
            on_batch=progress.batch, on_message=None if quiet else progress.message,
        )  # fmt: skip
    if not report.main:  # under torchrun, rank 0 reports
        return
    top1 = report.best.get("val_top1", float("nan"))
    click.echo(
        f"{report.epochs_run} epoch(s) run, {report.stopped}; best epoch {report.best_epoch}: "
        f"val top-1 {top1:.4f} → {output / 'best.pt'}",
        err=True,
    )


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as error:
        raise click.BadParameter(f"{text!r}: give comma-separated numbers") from error
