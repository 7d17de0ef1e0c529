"""``feat3d evaluate``: video and clip accuracy of a checkpoint on a dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..cli import (
    batch_size_option,
    compile_option,
    dataset_options,
    device_option,
    output_option,
    plot_option,
    precision_option,
    trust_option,
    workers_option,
)
from ..cli_video import (
    clips_per_video_option,
    crops_option,
    two_stream_options,
)
from ..options import ClipOptions, ModelOptions, TwoStreamOptions, fill_clip_defaults
from ..plots import plot_confusion, require_matplotlib
from ..train import evaluate_videos, write_evaluation
from . import common


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@dataset_options
@click.option("--split", "which", type=click.Choice(["val", "train", "all"]), default="val",
              show_default=True, help="Which videos of DATASET to evaluate.")  # fmt: skip
@output_option("Folder for metrics.json, per_class.csv, confusion.csv, predictions.json.",
               kind="folder", required=False)  # fmt: skip
@plot_option("Draw the confusion matrix (rows normalized per true class) into FILE.png "
             "(needs matplotlib).")  # fmt: skip
@clips_per_video_option()
@batch_size_option()
@workers_option()
@device_option()
@precision_option()
@trust_option("Allow full unpickling (runs its code).")
@compile_option()
@crops_option()
@two_stream_options
def evaluate_command(
    checkpoint: Path, dataset: Path, val_split: float, seed: int, train_list: Path | None,
    val_list: Path | None, classes_file: Path | None, csv_file: Path | None,
    annotation_file: Path | None, frame_rate: float | None, which: str,
    output: Path | None, plot_path: Path | None, clips_per_video: int | None, batch_size: int,
    workers: int | str,
    device: str, precision: str, trust_checkpoint: bool, compile_model: bool, crops: int,
    two_stream: TwoStreamOptions,
) -> None:  # fmt: skip
    """Evaluate CHECKPOINT on DATASET the papers' way: non-overlapping clips (or, with
    --clips-per-video, N views spread over each video), centre crop, clip softmax averaged per
    video. Prints video top-1/top-5 and clip accuracy.

    \b
    Examples:
      feat3d evaluate runs/motion/best.pt motion/
      feat3d evaluate runs/ucf/best.pt ucf101/ --val-list testlist01.txt \\
          --train-list trainlist01.txt --classes classInd.txt -o runs/ucf/eval
      feat3d evaluate runs/motion/best.pt motion/ --plot confusion.png
      feat3d evaluate runs/motion/best.pt motion/ --clips-per-video 10
      feat3d evaluate runs/st4/last.pt ucf101/ --flow flow.h5 ...   # st-resnet-50
    """
    if plot_path is not None:
        require_matplotlib()
    split = common.load_split(dataset, val_split, seed, train_list, val_list, classes_file,
                              csv_file, annotation_file, frame_rate)  # fmt: skip
    vm = common.load(ModelOptions(
        weights=str(checkpoint), device=device, precision=precision,
        trust_checkpoint=trust_checkpoint, compile=compile_model,
    ))  # fmt: skip
    items = {"val": split.val, "train": split.train, "all": [*split.train, *split.val]}[which]
    result = evaluate_videos(
        vm, items, split.classes,
        clips=fill_clip_defaults(
            ClipOptions(clips_per_video=clips_per_video, crops=crops, frame_rate=frame_rate),
            vm.meta,
        ),
        batch_size=batch_size, workers=workers, two_stream=two_stream,
    )  # fmt: skip
    click.echo(result.summary())
    for failure in result.failures:
        click.echo(f"error: {failure.source}: {failure.message}", err=True)
    if output is not None:
        write_evaluation(result, split.classes, output)
        click.echo(f"written to {output}", err=True)
    if plot_path is not None:
        plot_confusion(result.confusion, split.classes, plot_path)
        click.echo(f"confusion matrix drawn in {plot_path}", err=True)
    if result.failures:
        sys.exit(1)
