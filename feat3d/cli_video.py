"""The ``feat3d`` options about videos and runs over them, each declared once: how videos are
cut into clips (sizes, crops, views, windows, frame rates, retries), two-stream and I3D flow
inputs, what ``extract`` stores and pools, and where a run runs (shards, devices, Ray). The
group, the general options and :func:`~feat3d.cli.collect` are in :mod:`feat3d.cli`."""

from __future__ import annotations

from pathlib import Path

import click

from .cli import (
    CLIP_FIELDS,
    ENGINE_FIELDS,
    POOL_FIELDS,
    TWO_STREAM_FIELDS,
    Decorator,
    F,
    batch_size_option,
    collect,
    frame_rate_option,
    quiet_option,
    stack_options,
    verbose_option,
    workers_option,
)
from .clikit import ShardParam, SizeParam
from .model import LAYERS
from .options import ClipOptions, PoolOptions, TwoStreamOptions


def feature_options(func: F) -> F:
    """What ``extract`` stores of each clip: the layer, pooled or not, its views, its type."""
    return stack_options(
        click.option("--layer", type=click.Choice(LAYERS), default=None,
                     help="conv5 (last stage, pooled; mixed_5c for i3d), pool5, fc6/fc7 (C3D), "
                     "logits or probs; pool5_rgb/pool5_flow with i3d --streams rgb,flow. "
                     "Default: the network's feature layer (pool5; fc6 for C3D). `feat3d "
                     "models` lists each one's width."),
        click.option("--no-pool", is_flag=True,
                     help="With --layer conv5 (mixed_5c for i3d): keep the (D, t, h, w) map."),
        click.option("--average-only", is_flag=True,
                     help="Store only the per-video mean, not each clip."),
        click.option("--crop-reduce", type=click.Choice(["none", "mean"]), default="none",
                     show_default=True, help="With --crops 3/5/10: none stores (clips, crops, "
                     "D) per video; mean averages the views into (clips, D)."),
        click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32",
                     show_default=True, help="Stored feature type."),
    )(func)  # fmt: skip


def time_pool_options(func: F) -> F:
    """How clip features are pooled in time (extract, pool), handed to the command as
    ``pooling: PoolOptions | None`` (``None``: none of them given)."""
    return stack_options(
        click.option("--segments", type=click.IntRange(min=1), default=None, metavar="K",
                     help="K rows per video instead of one per clip: K equal time segments, "
                     "each the mean of the clips centred in it (an empty one: the nearest "
                     "clip); the UCF-Crime rule."),
        click.option("--every", type=click.FloatRange(min=0, min_open=True), default=None,
                     metavar="SECONDS", help="One row per interval [0, s), [s, 2s), ... of "
                     "each video, same rule (--every 1: one vector per second)."),
        click.option("--per-frame", is_flag=True,
                     help="One row per frame: the feature of the clip covering its time."),
        click.option("--interpolate", is_flag=True,
                     help="With --per-frame: interpolate linearly between clip centres."),
    )(collect("pooling", PoolOptions.chosen, POOL_FIELDS)(func))  # fmt: skip


def engine_options(func: F) -> F:
    """Where the work runs: a shard of the inputs, this machine's devices or processes, or a
    Ray cluster (extract). The engine's fields reach the command as ``engine`` (RunOptions
    fields by name); ``shard`` and ``devices`` as themselves."""
    return stack_options(
        click.option("--shard", type=ShardParam(), default=None, metavar="I/N",
                     help="Process only shard I of N (0-based) of the inputs, chosen by a hash "
                     "of each video's key: stable across runs and machines. Merge the parts "
                     "with `feat3d merge`."),
        click.option("--devices", default=None, metavar="DEV,DEV,...",
                     help="One process per device (e.g. cuda:0,cuda:1), each on a shard; the "
                     "parts are merged into OUTPUT (HDF5) at the end. Under torchrun, each rank "
                     "does this on its own."),
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="local: decoding processes and the model on this machine; ray: a Ray "
                     "Data pipeline (decoding tasks, one inference actor per GPU) on the cluster "
                     "--address names (needs feat3d[ray]); the same outputs and resume."),
        click.option("--address", default=None, metavar="auto|HOST:PORT",
                     help="--engine ray: the cluster to join (auto: the one `ray start` or "
                     "KubeRay made here). Default: a local Ray started for this run."),
        click.option("--actors", type=click.IntRange(min=1), default=None,
                     help="--engine ray: inference actors. Default: one per GPU of the cluster "
                     "(one on the CPU with --device cpu)."),
        click.option("--decode-cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     show_default=True, help="--engine ray: CPUs per decoding task (one video "
                     "each; also its codec threads)."),
        click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=None,
                     help="--engine ray: GPUs per inference actor (fractions share a GPU). "
                     "Default: 1 when the model runs on CUDA, else 0."),
        click.option("--part-rows", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Parquet: clips per part file (default 10000; 2048 for the clip parts "
                     "the Ray engine's workers write); a killed run redoes at most the parts "
                     "it was filling."),
    )(collect("engine", dict, ENGINE_FIELDS)(func))  # fmt: skip


def crop_option(default: int | None = None, help: str = "") -> Decorator:
    return click.option(
        "--crop", type=SizeParam(), default=default, show_default=default is not None,
        metavar="N|HxW", help=help or "Centre crop. Default: the weights' (112).",
    )  # fmt: skip


def crops_option() -> Decorator:
    """``--crops``: spatial views per clip (extract, classify, evaluate)."""
    return click.option(
        "--crops", type=click.Choice(["1", "3", "5", "10"]), default="1", show_default=True,
        callback=lambda _ctx, _param, value: int(value),
        help="Views per clip, each of the --crop size, cut from the resized frame: 1 centre; 3 "
        "along the long side (SlowFast's test); 5 corners and centre; 10 those and their "
        "mirror images (torchvision's ten_crop). A clip's views share its batch. extract "
        "stores (clips, crops, D) (see --crop-reduce); classify and evaluate average the "
        "views' softmax scores.",
    )  # fmt: skip


def flow_file_option(help: str) -> Decorator:
    path = click.Path(exists=True, dir_okay=False, path_type=Path)
    return click.option("--flow", "flow", type=path, default=None, metavar="FLOW.h5", help=help)


def flow_method_option(name: str, help: str) -> Decorator:
    """The optical-flow method: ``flow --method`` and the two-stream ``--flow-method``."""
    methods = click.Choice(["tvl1", "dis", "farneback"])
    return click.option(name, type=methods, default="tvl1", show_default=True, help=help)


def _seconds(name: str, help: str) -> Decorator:
    return click.option(
        name, type=click.FloatRange(min=0), default=None, metavar="SECONDS", help=help
    )


def sampling_options(**help: str) -> Decorator:
    """How clips are sampled in time (extract, classify, train); ``help`` by parameter name."""
    count = click.IntRange(min=1)
    return stack_options(
        click.option("--clip-len", type=count, default=None, help=help["clip_len"]),
        click.option("--frame-stride", type=count, default=None, help=help["frame_stride"]),
        click.option("--fps", type=click.FloatRange(min=0), default=None, help=help["fps"]),
        _seconds("--start", help["start"]),
        _seconds("--end", help["end"]),
        click.option("--max-clips", type=count, default=None, help=help["max_clips"]),
    )


def clips_per_video_option() -> Decorator:
    """``--clips-per-video``: N views spread uniformly over each video (extract, classify,
    evaluate)."""
    return click.option(
        "--clips-per-video", type=click.IntRange(min=1), default=None, metavar="N",
        help="N clips spread uniformly over each video (first starts on the first frame, last "
        "ends on the last; torchvision's and SlowFast's multi-view test) instead of clips "
        "every --stride frames. Default: consecutive clips.",
    )  # fmt: skip


def window_option() -> Decorator:
    """``--window``: consecutive clips, or one window centred on each output frame."""
    return click.option(
        "--window", type=click.Choice(["clips", "centred", "centered"]), default="clips",
        show_default=True,
        help="clips: clips every --stride frames. centred: one clip-len window centred on "
        "every --stride-th frame (default stride 1), the ends padded by repeating the first "
        "or last frame; each feature stands for its centre frame (action segmentation).",
    )  # fmt: skip


def clip_options(func: F) -> F:
    """Options that decide how videos become clips (extract and classify), handed to the
    command as ``clips: ClipOptions``, and how the clips run (batch size, workers, output)."""
    return stack_options(
        sampling_options(
            clip_len="Frames per clip. Default: the weights' clip length (16).",
            frame_stride="Take every K-th frame of a clip-len×K window. Default: the weights' "
            "(2 for Res3D, else 1).",
            fps="Sample frames at F per second by presentation time (no re-encoding). Default: "
            "the weights' rate (15 for torchvision's), else native; 0 forces native.",
            start="Skip to this time (seeks to the keyframe before it).",
            end="Stop at this time.",
            max_clips="At most N clips per video.",
        ),
        click.option("--stride", type=click.IntRange(min=1), default=None,
                     help="Frames between clip starts. Default: clip length (no overlap). "
                     "With --window centred: frames between window centres (default 1)."),
        click.option("--max-frames", type=click.IntRange(min=1), default=None,
                     help="Decode at most N frames per video."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     metavar="SECONDS",
                     help="Record a video as failed when decoding it takes longer (time "
                     "waiting for the model does not count); a decoder that hangs is killed."),
        click.option("--tail", type=click.Choice(["pad", "drop"]), default="pad", show_default=True,
                     help="Loop the last partial clip to full length, or drop it."),
        window_option(),
        clips_per_video_option(),
        click.option("--size", type=SizeParam(), default=None, metavar="N|HxW",
                     help="Resize: short side N, or exactly HxW. Default: the weights' (112, or "
                     "128x171 for torchvision weights)."),
        crop_option(),
        crops_option(),
        frame_rate_option(),
        retries_option(),
        batch_size_option(help="Clips per forward pass; batches span videos; a clip's --crops "
                          "views go with it."),
        workers_option(),
        quiet_option(),
        verbose_option(),
    )(collect("clips", ClipOptions, CLIP_FIELDS)(func))  # fmt: skip


def retries_option() -> Decorator:
    """``--retries``: network retries for inputs and outputs at URLs."""
    return click.option(
        "--retries", type=click.IntRange(min=0), default=2, show_default=True,
        help="For URLs (s3://, gs://, https://): try again this many times after a timeout, "
        "a dropped connection or HTTP 5xx, waiting 0.5 s, 1 s, 2 s, ...; then the video "
        "fails (404, 403 and missing keys fail at once).",
    )  # fmt: skip


def two_stream_options(func: F) -> F:
    """Options of two-stream networks (``st-resnet-50``; extract, classify, evaluate), handed
    to the command as ``two_stream: TwoStreamOptions``."""
    return stack_options(
        flow_file_option("st-resnet-50: optical flow from `feat3d flow` (default: computed on "
                         "the fly with --flow-method)."),
        flow_method_option("--flow-method", "st-resnet-50: how flow is computed when --flow is "
                           "not given."),
        click.option("--chunks", type=click.IntRange(min=1), default=25, show_default=True,
                     help="st-resnet-50: chunks evenly spaced over each video (the paper's 25)."),
        click.option("--streams", default="rgb", show_default=True, metavar="rgb|flow|rgb,flow",
                     help="i3d: the streams to run; rgb,flow stores pool5 of both and their "
                     "2048-d concatenation (flow: TV-L1 at the clips' rate, ±20 px, /20)."),
        click.option("--flow-weights", default=None, metavar="NAME|PATH",
                     help="i3d --streams rgb,flow: the flow network's weights "
                     "(flow_imagenet.pt); --weights are the RGB network's."),
    )(collect("two_stream", TwoStreamOptions, TWO_STREAM_FIELDS)(func))  # fmt: skip
