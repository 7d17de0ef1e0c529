"""The options of ``feat3d train``'s recipe: stages, optimizer, sampling and augmentation."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import (
    Decorator,
    F,
    batch_size_option,
)
from ..cli_video import (
    crop_option,
    flow_file_option,
    sampling_options,
)
from ..train.fit import BLOCKS

_count, _rate = click.IntRange(min=1), click.FloatRange(0, 1)


def recipe_options(func: F) -> F:
    """Every option of the recipe, in the order ``train --help`` lists them."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


_OPTIONS: list[Decorator] = [
    click.option("--stage", type=click.Choice(["motion", "appearance", "st", "st-star"]),
                 help="st-resnet-50 only: the training stage of Feichtenhofer et al.'s Table 2 "
                 "(needs --flow, and --init-2d for the first stage or --pretrained RUN/last.pt "
                 "for later ones)."),
    flow_file_option("With --stage: the `feat3d flow` HDF5 file of DATASET."),
    click.option("--init-2d", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 metavar="RESNET50.pth", help="With --stage: inflate these torchvision "
                 "ResNet-50 ImageNet weights (first stage)."),
    click.option("--max-steps", type=_count,
                 help="With --stage: stop after N SGD steps (smoke runs)."),
    click.option("--finetune-from", type=click.Choice(BLOCKS), help="First trained block; all "
                 "before it is frozen. Default with --pretrained: conv5."),
    click.option("--epochs", type=_count, default=200, show_default=True,
                 help="Most epochs to run (the rate schedule may stop the run earlier)."),
    batch_size_option(32),
    click.option("--accumulate", type=_count, default=8, show_default=True, help="Forward "
                 "passes per optimizer step (32 × 8 = the paper's batch of 256)."),
    click.option("--lr", type=float, help="Learning rate. Default: 0.1 from scratch, 0.001 "
                 "when fine-tuning."),
    click.option("--scale-lr", is_flag=True,
                 help="Linear scaling rule: train at lr × batch-size × accumulate × processes "
                 "/ 256 (the rate is meant for a batch of 256); config.json records it as "
                 "effective_lr."),
    click.option("--momentum", type=float, default=0.9, show_default=True,
                 help="SGD momentum."),
    click.option("--dampening", type=float, default=0.9, show_default=True,
                 help="SGD dampening (Hara et al.'s code)."),
    click.option("--nesterov", is_flag=True, help="Nesterov momentum (needs --dampening 0)."),
    click.option("--weight-decay", type=float,
                 help="Default: 0.001 from scratch, 1e-5 when fine-tuning."),
    click.option("--lr-patience", type=click.IntRange(min=0), default=10, show_default=True,
                 help="Validation epochs without a lower loss before the rate is divided by 10."),
    click.option("--max-lr-drops", type=click.IntRange(min=0), default=3, show_default=True,
                 help="Rate divisions before training stops at the next plateau."),
    sampling_options(
        clip_len="Frames per clip (default: the pretrained weights', else 16).",
        frame_stride="Every K-th frame of a clip-len×K window (default: weights', else 1).",
        fps="Sample frames at F per second (stored in the checkpoints and used by default "
        "with them). Default: the pretrained weights' rate, else native.",
        start="Sample clips from this time on.", end="Sample clips before this time.",
        max_clips="Validate on at most N clips per video.",
    ),
    crop_option(112, help="Side of the training and validation crops (N: a square)."),
    click.option("--decode-size", type=_count, default=128, show_default=True,
                 help="Short side frames are decoded at before multi-scale cropping."),
    click.option("--scales", default="1,0.8409,0.7071,0.5946,0.5", show_default=True,
                 help="Crop sides as fractions of the short side (Hara et al.: 1 .. 1/2)."),
    click.option("--flip", type=_rate, default=0.5, show_default=True,
                 help="Probability of a horizontal flip."),
]  # fmt: skip
