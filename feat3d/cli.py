"""The ``feat3d`` command line: a thin click layer over ``feat3d.extract`` and ``classify``."""

from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import __version__
from .backbones import (
    WeightsError,
    convert_checkpoint,
    list_backbones,
    list_weights,
    weights_cache_path,
)
from .backbones.published import describe_models, published_checkpoints
from .classify import ClassifyReport, classify, write_json
from .extract import RunEvents, extract
from .io.decode import VideoDecodeError
from .io.discover import InputError
from .io.writers import FORMATS, OutputError, VideoFailure
from .model import LAYERS, PRECISIONS, VideoModel, load_model

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)


class SizeParam(click.ParamType):
    """``112`` (short side) or ``128x171`` (exact height × width)."""

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


def model_options(func: F) -> F:
    """Options that choose the network and where it runs (shared by every command)."""
    options = [
        click.option(
            "--model", "-m", type=click.Choice(list_backbones()), default=None,
            help="Architecture. Default: the one the weights record, else r3d_18.",
        ),
        click.option(
            "--weights", "-w", default="DEFAULT", show_default=True, metavar="NAME|PATH|none",
            help="Checkpoint path (Hara 2017/2020, torchvision or feat3d format), a named weights "
            "(r3d_18.kinetics400_v1), DEFAULT (the model's published weights) or none (random).",
        ),
        click.option(
            "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
            help="Where the model runs.",
        ),
        click.option(
            "--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
            help="bf16/fp16 run under autocast (fp16 needs CUDA).",
        ),
        click.option(
            "--num-classes", type=click.IntRange(min=1), default=None,
            help="Classes for random initialization; with weights it is read from the file.",
        ),
        click.option(
            "--trust-checkpoint", is_flag=True,
            help="Load a checkpoint that holds pickled Python objects with full unpickling. "
            "This can run code hidden in the file: only for files you trust.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def clip_options(func: F) -> F:
    """Options that decide how videos become clips (shared by extract and classify)."""
    options = [
        click.option("--clip-len", type=click.IntRange(min=1), default=None,
                     help="Frames per clip. Default: the weights' clip length (16)."),
        click.option("--stride", type=click.IntRange(min=1), default=None,
                     help="Frames between clip starts. Default: clip length (no overlap)."),
        click.option("--frame-stride", type=click.IntRange(min=1), default=None,
                     help="Take every K-th frame of a clip-len×K window. Default: the "
                     "weights' (2 for Res3D, else 1)."),
        click.option("--tail", type=click.Choice(["pad", "drop"]), default="pad", show_default=True,
                     help="Loop the last partial clip to full length, or drop it."),
        click.option("--size", type=SizeParam(), default=None, metavar="N|HxW",
                     help="Resize: short side N, or exactly HxW. Default: the weights' (112, or "
                     "128x171 for torchvision weights)."),
        click.option("--crop", type=SizeParam(), default=None, metavar="N|HxW",
                     help="Centre crop. Default: the weights' (112)."),
        click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Clips per forward pass; batches span videos."),
        click.option("--workers", "-j", default="auto", show_default=True, metavar="N|auto",
                     help="Decoding processes (0: decode in the main process)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress output."),
        click.option("--verbose", "-v", is_flag=True, help="Print each finished video."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _workers(value: str) -> int:
    from .pipeline import resolve_workers

    try:
        return resolve_workers(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--workers") from error


def errors_to_click(func: F) -> F:
    """Turn feat3d's errors into one-line messages: usage errors exit 2, the rest exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as error:
            raise click.BadParameter(str(error), param_hint="INPUTS") from error
        except (WeightsError, OutputError, VideoDecodeError, ValueError) as error:
            raise click.ClickException(str(error)) from error

    return wrapper  # type: ignore[return-value]


class CliEvents(RunEvents):
    """Progress on stderr: a rich bar on a terminal, plain lines otherwise."""

    def __init__(self, *, quiet: bool, verbose: bool, what: str):
        self.quiet = quiet
        self.verbose = verbose
        self.what = what
        self.clips = 0
        self.done = 0
        self.total = 0
        self.started = time.perf_counter()
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> CliEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_start(self, *, total: int, skipped: int) -> None:
        self.total = total
        self.started = time.perf_counter()
        if skipped and not self.quiet:
            err_console.print(
                f"resuming: {skipped} video(s) already complete in the output, skipped"
            )
        if self.quiet or not err_console.is_terminal:
            return
        self.progress = Progress(
            TextColumn(f"[bold]{self.what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("videos · {task.fields[rate]} clips/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
        )
        self.task = self.progress.add_task(self.what, total=total, rate="–")
        self.progress.start()

    def _rate(self) -> str:
        elapsed = time.perf_counter() - self.started
        return f"{self.clips / elapsed:.1f}" if elapsed > 0 else "–"

    def on_clips(self, count: int) -> None:
        self.clips += count
        if self.progress is not None:
            self.progress.update(self.task, rate=self._rate())

    def _advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.task, advance=1, rate=self._rate())

    def on_video(self, key: str, n_clips: int) -> None:
        self._advance()
        if self.progress is None and not self.quiet:
            click.echo(
                f"[{self.done}/{self.total}] {key}: {n_clips} clips ({self._rate()} clips/s)",
                err=True,
            )
        elif self.verbose and self.progress is not None:
            self.progress.console.print(f"{key}: {n_clips} clips")

    def on_failure(self, failure: VideoFailure) -> None:
        self._advance()
        line = f"error: {failure.source}: {failure.message}"
        if self.progress is not None:
            self.progress.console.print(line, style="red", markup=False, highlight=False)
        else:
            click.echo(line, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="feat3d")
def cli() -> None:
    """Spatio-temporal features and action labels from videos with 3D ResNets.

    \b
    Examples:
      feat3d extract videos/ -o feats.h5 --weights r3d_18.kinetics400_v1
      feat3d classify clip.mp4 --per-clip
    """


@cli.command("extract")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="HDF5 file (.h5), JSON Lines file (.json/.jsonl) or a folder for npy.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format. Default: from the output's extension (a folder → npy).",
)
@model_options
@click.option(
    "--layer",
    type=click.Choice(LAYERS),
    default=None,
    help="conv5 (last stage, pooled), pool5, fc6/fc7 (C3D), logits or probs. Default: the "
    "network's feature layer (pool5; fc6 for C3D). `feat3d models` lists each one's width.",
)
@click.option("--no-pool", is_flag=True, help="With --layer conv5: keep the (D, t, h, w) map.")
@click.option("--average-only", is_flag=True, help="Store only the per-video mean, not each clip.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Stored feature type.",
)
@clip_options
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the output. Without it, videos already complete are skipped (resume).",
)
@errors_to_click
def extract_command(
    inputs: tuple[str, ...], output: Path, output_format: str | None, model: str | None,
    weights: str, device: str, precision: str, num_classes: int | None,
    trust_checkpoint: bool, layer: str | None,
    no_pool: bool, average_only: bool, dtype: str, clip_len: int | None, stride: int | None,
    frame_stride: int | None, tail: str, size: Any, crop: Any, batch_size: int, workers: str,
    quiet: bool, verbose: bool, overwrite: bool,
) -> None:  # fmt: skip
    """Extract per-clip and per-video features of INPUTS (files, folders, @list.txt).

    \b
    Examples:
      feat3d extract videos/ -o feats.h5
      feat3d extract a.mp4 b.mkv -o feats/ --format npy --layer logits
      feat3d extract @todo.txt -o feats.h5 -m resnet-34 -w resnet-34-kinetics.pth
    """
    vm = _load(model, weights, device, precision, trust_checkpoint, num_classes, quiet)
    with CliEvents(quiet=quiet, verbose=verbose, what="extract") as events:
        report = extract(
            inputs, output, model=vm, layer=layer, pool=not no_pool, clip_len=clip_len,
            stride=stride, frame_stride=frame_stride, tail=tail, size=size, crop=crop,
            batch_size=batch_size,
            workers=_workers(workers), dtype=dtype, average_only=average_only,
            format=output_format, overwrite=overwrite, events=events,
        )  # fmt: skip
    if not quiet:
        click.echo(
            f"{len(report.written)} video(s) written to {output}, {len(report.skipped)} skipped "
            f"(already complete), {len(report.failures)} failed",
            err=True,
        )
    if report.failures:
        sys.exit(1)


def _load(
    model: str | None, weights: str, device: str, precision: str, trust: bool,
    num_classes: int | None, quiet: bool,
) -> VideoModel:  # fmt: skip
    """Load the model, printing library warnings (random weights, ...) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vm = load_model(
            model, weights, device=device, precision=precision, trust_checkpoint=trust,
            num_classes=num_classes,
        )  # fmt: skip
    if not quiet:
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
        click.echo(f"weights: {vm.meta.describe()}", err=True)
    return vm


@cli.command("classify")
@click.argument("inputs", nargs=-1, required=True, metavar="VIDEOS...")
@model_options
@click.option(
    "--top-k",
    "-k",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Labels per video (and per clip).",
)
@click.option(
    "--per-clip", is_flag=True, help="Also print each clip's top-k with its frames and times."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the predictions as JSON to this file ('-' for stdout).",
)
@click.option(
    "--format",
    "json_format",
    type=click.Choice(["feat3d", "hara"]),
    default="feat3d",
    show_default=True,
    help="JSON schema: feat3d's, or that of Hara et al.'s classify tool.",
)
@clip_options
@errors_to_click
def classify_command(
    inputs: tuple[str, ...], model: str | None, weights: str, device: str, precision: str,
    num_classes: int | None, trust_checkpoint: bool, top_k: int, per_clip: bool,
    json_path: Path | None, json_format: str, clip_len: int | None, stride: int | None,
    frame_stride: int | None, tail: str, size: Any,
    crop: Any, batch_size: int, workers: str, quiet: bool, verbose: bool,
) -> None:  # fmt: skip
    """Top-k action labels of each video (mean of clip softmax scores) and, with --per-clip,
    of each clip.

    \b
    Examples:
      feat3d classify clip.mp4
      feat3d classify videos/ --per-clip --json labels.json
      feat3d classify clip.mp4 -w resnet-34-kinetics.pth --format hara --json out.json
    """
    vm = _load(model, weights, device, precision, trust_checkpoint, num_classes, quiet)
    with CliEvents(quiet=quiet, verbose=verbose, what="classify") as events:
        report = classify(
            inputs, model=vm, top_k=top_k, clip_len=clip_len, stride=stride,
            frame_stride=frame_stride, tail=tail, size=size,
            crop=crop, batch_size=batch_size, workers=_workers(workers), events=events,
        )  # fmt: skip
    if json_path is not None:
        if str(json_path) == "-":
            data = report.to_hara(vm.categories) if json_format == "hara" else report.to_json()
            click.echo(json.dumps(data, indent=1, ensure_ascii=False))
        else:
            write_json(report, json_path, format=json_format, categories=vm.categories)
    if json_path is None or str(json_path) != "-":
        _print_predictions(report, per_clip=per_clip)
    if report.failures:
        sys.exit(1)


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
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
    Console().print(table)


@cli.group("weights", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.pass_context
def weights_group(ctx: click.Context, as_json: bool) -> None:
    """List the published checkpoints feat3d reads and where to get them, or convert one.

    \b
    Examples:
      feat3d weights
      feat3d weights convert resnet-34-kinetics.pth resnet-34-kinetics.safetensors
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = published_checkpoints()
    if as_json:
        click.echo(json.dumps([row.__dict__ for row in rows], indent=1))
        return
    table = Table(title="published checkpoints (--weights NAME for torchvision's, else a path)")
    for column in ("file", "model", "format", "classes", "trained on", "accuracy", "get it"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.filename, row.model, row.format, str(row.classes), row.dataset, row.accuracy,
            row.source,
        )  # fmt: skip
    Console().print(table)
    cached = [w for w in list_weights() if weights_cache_path(w).exists()]
    click.echo(f"torch.hub cache: {weights_cache_path(list_weights()[0]).parent}")
    click.echo(f"cached there: {', '.join(w.name for w in cached) or 'none'}")


@weights_group.command("convert")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trust-checkpoint", is_flag=True,
    help="Allow full unpickling of SOURCE (can run code hidden in it).",
)  # fmt: skip
@errors_to_click
def convert_command(source: Path, target: Path, trust_checkpoint: bool) -> None:
    """Convert any supported checkpoint to feat3d's format: TARGET.safetensors (never runs
    code when loaded) or TARGET.pt, with its metadata (classes, normalization, clip length).

    \b
    Examples:
      feat3d weights convert resnet-34-kinetics.pth resnet-34-kinetics.safetensors
      feat3d weights convert r3d18_K_200ep.pth r3d18.pt
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = convert_checkpoint(source, target, trust=trust_checkpoint)
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    click.echo(f"{source} → {target}: {meta.arch}, {len(meta.categories)} classes")


def _print_predictions(report: ClassifyReport, *, per_clip: bool) -> None:
    console = Console()
    marker = escape(" [random weights]") if report.random_weights else ""
    for video in report.videos:
        title = escape(f"{video.video} — {report.arch} ({report.weights})") + marker
        table = Table(title=title, title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        for rank, label in enumerate(video.top_k, 1):
            table.add_row(str(rank), escape(label.label) + marker, f"{label.score:.4f}")
        console.print(table)
        if per_clip:
            clips = Table(title=escape(f"{video.video} — per clip"), title_justify="left")
            clips.add_column("frames")
            clips.add_column("seconds")
            clips.add_column("top labels")
            for clip in video.clips:
                labels = escape(", ".join(f"{lab.label} {lab.score:.3f}" for lab in clip.top_k))
                clips.add_row(
                    f"{clip.segment[0]}–{clip.segment[1]}",
                    f"{clip.time[0]:.2f}–{clip.time[1]:.2f}",
                    labels + marker,
                )
            console.print(clips)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="feat3d")


if __name__ == "__main__":
    main()
