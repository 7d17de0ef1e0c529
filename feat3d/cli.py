"""The ``feat3d`` command line: a thin click layer over ``feat3d.extraction`` and ``classify``."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem
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
    convert_checkpoint,
    list_backbones,
    list_weights,
    weights_cache_path,
)
from .backbones.hub import (
    add_weights,
    download_weights,
    known_weights,
    remove_weights,
    weight_names,
    weights_home,
)
from .backbones.published import describe_models
from .classification import ClassifyReport, classify, write_json
from .config import add_config_option
from .errors import Feat3dError
from .extraction import RunEvents, extract
from .io.discover import InputError
from .io.writers import FORMATS, VideoFailure
from .model import LAYERS, VideoModel, load_model
from .plots import require_matplotlib
from .precision import PRECISIONS
from .shards import extract_on_devices, extract_rank, rank_from_env
from .train.fit import BLOCKS
from .train.svm import parse_number_list, pca_rows, summary_lines, svm_evaluate

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)


def out_console() -> Console:
    """stdout for tables: the terminal's width, or wide enough not to fold lines in a pipe or
    a file (rich would wrap them at 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=240)


class ShardParam(click.ParamType):
    """``I/N``: shard I (0-based) of N."""

    name = "I/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        from .io.merge import parse_shard

        try:
            return parse_shard(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


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
            shell_complete=_complete_weights,
            help="Checkpoint path (Hara 2017/2020, torchvision or feat3d format), a named weights "
            "(r3d_18.kinetics400_v1), DEFAULT (the model's published weights) or none (random).",
        ),
        click.option(
            "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
            help="Where the model runs.",
        ),
        click.option(
            "--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
            help="bf16: bf16 weights on CPUs with bf16 instructions (refused on other CPUs), "
            "autocast on CUDA; fp16: autocast, CUDA only. See README, Speed.",
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
        click.option(
            "--compile", is_flag=True, expose_value=False, callback=_remember_compile,
            help="Run the network through torch.compile: the first batch compiles (seconds "
            "to a minute), later ones run about 10 % faster on a CPU.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _complete_weights(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``--weights`` completes to registered and named weights, then to files."""
    names = [name for name in weight_names() if name.startswith(incomplete)]
    return [CompletionItem(incomplete, type="file"), *(CompletionItem(name) for name in names)]


def _remember_compile(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    ctx.meta["feat3d.compile"] = value


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
        click.option("--fps", type=click.FloatRange(min=0), default=None,
                     help="Sample frames at F per second by presentation time (no "
                     "re-encoding). Default: the weights' rate (15 for torchvision's), else "
                     "native; 0 forces native."),
        click.option("--start", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                     help="Skip to this time (seeks to the keyframe before it)."),
        click.option("--end", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                     help="Stop at this time."),
        click.option("--max-clips", type=click.IntRange(min=1), default=None,
                     help="At most N clips per video."),
        click.option("--max-frames", type=click.IntRange(min=1), default=None,
                     help="Decode at most N frames per video."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     metavar="SECONDS",
                     help="Record a video as failed when decoding it takes longer (time "
                     "waiting for the model does not count); a decoder that hangs is killed."),
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


def two_stream_options(func: F) -> F:
    """Options of the two-stream ``st-resnet-50`` (extract and classify)."""
    options = [
        click.option("--flow", "flow", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, metavar="FLOW.h5",
                     help="st-resnet-50: optical flow from `feat3d flow` (default: computed "
                     "on the fly with --flow-method)."),
        click.option("--flow-method", type=click.Choice(["tvl1", "dis", "farneback"]),
                     default="tvl1", show_default=True,
                     help="st-resnet-50: how flow is computed when --flow is not given."),
        click.option("--chunks", type=click.IntRange(min=1), default=25, show_default=True,
                     help="st-resnet-50: chunks evenly spaced over each video (the paper's 25)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _workers(value: str) -> int | str:
    """A checked ``--workers``: a count, or ``auto`` (resolved for the model's device)."""
    from .pipeline import resolve_workers

    try:
        count = resolve_workers(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--workers") from error
    return "auto" if value == "auto" else count


def errors_to_click(func: F) -> F:
    """Turn feat3d's errors into one-line messages: usage errors exit 2, the rest exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as error:
            raise click.BadParameter(str(error), param_hint="INPUTS") from error
        except Feat3dError as error:
            exception = click.ClickException(str(error))
            exception.exit_code = error.exit_code
            raise exception from error
        except ValueError as error:
            raise click.ClickException(str(error)) from error

    return wrapper  # type: ignore[return-value]


class CliEvents(RunEvents):
    """Progress on stderr: a rich bar on a terminal, plain lines otherwise."""

    def __init__(self, *, quiet: bool, verbose: bool, what: str, unit: str = "clips"):
        self.quiet = quiet
        self.verbose = verbose
        self.what = what
        self.unit = unit
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
            TextColumn(f"videos · {{task.fields[rate]}} {self.unit}/s"),
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
                f"[{self.done}/{self.total}] {key}: {n_clips} {self.unit} "
                f"({self._rate()} {self.unit}/s)",
                err=True,
            )
        elif self.verbose and self.progress is not None:
            self.progress.console.print(f"{key}: {n_clips} {self.unit}")

    def on_failure(self, failure: VideoFailure) -> None:
        self._advance()
        line = f"error: {failure.source}: {failure.message}"
        if self.progress is not None:
            self.progress.console.print(line, style="red", markup=False, highlight=False)
        else:
            click.echo(line, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="feat3d")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Spatio-temporal features and action labels from videos with 3D ResNets.

    \b
    Examples:
      feat3d extract videos/ -o feats.h5 --weights r3d_18.kinetics400_v1
      feat3d classify clip.mp4 --per-clip
    """
    global err_console
    # rich reads NO_COLOR and decides colours when a Console is built: build it per run, so
    # the environment and stderr of this run count, not those at import time.
    err_console = Console(stderr=True)
    if os.environ.get("NO_COLOR"):  # https://no-color.org: any non-empty value
        ctx.color = False


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
@click.option(
    "--shard",
    type=ShardParam(),
    default=None,
    metavar="I/N",
    help="Process only shard I of N (0-based) of the inputs, chosen by a hash of each video's "
    "key: stable across runs and machines. Merge the parts with `feat3d merge`.",
)
@click.option(
    "--devices",
    default=None,
    metavar="DEV,DEV,...",
    help="One process per device (e.g. cuda:0,cuda:1), each on a shard; the parts are merged "
    "into OUTPUT (HDF5) at the end. Under torchrun, each rank does this on its own.",
)
@click.option(
    "--errors",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.jsonl",
    help="Append one JSON line per failed video (video, source, error).",
)
@two_stream_options
@errors_to_click
def extract_command(
    inputs: tuple[str, ...], output: Path, output_format: str | None, model: str | None,
    weights: str, device: str, precision: str, num_classes: int | None,
    trust_checkpoint: bool, layer: str | None,
    no_pool: bool, average_only: bool, dtype: str, clip_len: int | None, stride: int | None,
    frame_stride: int | None, fps: float | None, start: float | None, end: float | None,
    max_clips: int | None, max_frames: int | None, timeout: float | None, tail: str,
    size: Any, crop: Any, batch_size: int, workers: str, quiet: bool, verbose: bool,
    overwrite: bool, shard: tuple[int, int] | None, devices: str | None, errors: Path | None,
    flow: Path | None, flow_method: str, chunks: int,
) -> None:  # fmt: skip
    """Extract per-clip and per-video features of INPUTS (files, folders, @list.txt).

    \b
    Examples:
      feat3d extract videos/ -o feats.h5
      feat3d extract a.mp4 b.mkv -o feats/ --format npy --layer logits
      feat3d extract @todo.txt -o feats.h5 -m resnet-34 -w resnet-34-kinetics.pth
    """
    options: dict[str, Any] = dict(
        layer=layer, pool=not no_pool, clip_len=clip_len, stride=stride,
        frame_stride=frame_stride, fps=fps, start=start, end=end, max_clips=max_clips,
        max_frames=max_frames, timeout=timeout, tail=tail, size=size, crop=crop,
        batch_size=batch_size, workers=_workers(workers), dtype=dtype,
        average_only=average_only, errors=errors, flow=flow, flow_method=flow_method,
        chunks=chunks,
    )  # fmt: skip
    ranked = rank_from_env()
    if devices is not None or ranked is not None:
        if shard is not None:
            raise click.UsageError("--shard and --devices/torchrun both split the inputs: use one")
        if devices is not None:
            lines = extract_on_devices(
                inputs, output, [d.strip() for d in devices.split(",") if d.strip()],
                model=model, weights=weights, precision=precision,
                trust_checkpoint=trust_checkpoint, num_classes=num_classes,
                overwrite=overwrite, format=output_format, **options,
            )  # fmt: skip
            failures = _print_parts(lines, output, quiet)
            sys.exit(1 if failures else 0)
        rank, world = ranked  # type: ignore[misc]
        vm = _load(model, weights, device, precision, trust_checkpoint, num_classes,
                   quiet or rank > 0)  # fmt: skip
        with CliEvents(quiet=quiet or rank > 0, verbose=verbose, what="extract") as events:
            report = extract_rank(
                inputs, output, rank=rank, world=world, model=vm, overwrite=overwrite,
                format=output_format, events=events, **options,
            )  # fmt: skip
    else:
        vm = _load(model, weights, device, precision, trust_checkpoint, num_classes, quiet)
        with CliEvents(quiet=quiet, verbose=verbose, what="extract") as events:
            report = extract(
                inputs, output, model=vm, format=output_format, overwrite=overwrite,
                events=events, shard=shard, **options,
            )  # fmt: skip
    if not quiet:
        click.echo(report.summary(), err=True)
    if report.failures:
        sys.exit(1)


def _print_parts(parts: list[tuple[str, int]], output: Path, quiet: bool) -> int:
    """Print each part's summary; the number of failed videos over all parts."""
    failures = 0
    for line, failed in parts:
        if not quiet:
            click.echo(line, err=True)
        failures += failed
    if not quiet:
        click.echo(f"merged into {output}", err=True)
    return failures


def _load(
    model: str | None, weights: str, device: str, precision: str, trust: bool,
    num_classes: int | None, quiet: bool,
) -> VideoModel:  # fmt: skip
    """Load the model, printing library warnings (random weights, ...) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ctx = click.get_current_context(silent=True)
        vm = load_model(
            model, weights, device=device, precision=precision, trust_checkpoint=trust,
            num_classes=num_classes,
            compile=bool(ctx is not None and ctx.meta.get("feat3d.compile", False)),
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
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Draw each video's per-clip probabilities of its top-k classes over time into "
    "DIR/<video key>.png (needs matplotlib).",
)
@clip_options
@two_stream_options
@errors_to_click
def classify_command(
    inputs: tuple[str, ...], model: str | None, weights: str, device: str, precision: str,
    num_classes: int | None, trust_checkpoint: bool, top_k: int, per_clip: bool,
    json_path: Path | None, json_format: str, plot_dir: Path | None, clip_len: int | None,
    stride: int | None, frame_stride: int | None, fps: float | None, start: float | None,
    end: float | None, max_clips: int | None, max_frames: int | None, timeout: float | None,
    tail: str, size: Any, crop: Any, batch_size: int, workers: str, quiet: bool, verbose: bool,
    flow: Path | None, flow_method: str, chunks: int,
) -> None:  # fmt: skip
    """Top-k action labels of each video (mean of clip softmax scores) and, with --per-clip,
    of each clip.

    \b
    Examples:
      feat3d classify clip.mp4
      feat3d classify videos/ --per-clip --json labels.json
      feat3d classify clip.mp4 -w resnet-34-kinetics.pth --format hara --json out.json
      feat3d classify videos/ --stride 8 --plot timelines/
    """
    if plot_dir is not None:
        require_matplotlib()
    vm = _load(model, weights, device, precision, trust_checkpoint, num_classes, quiet)
    with CliEvents(quiet=quiet, verbose=verbose, what="classify") as events:
        report = classify(
            inputs, model=vm, top_k=top_k, clip_len=clip_len, stride=stride,
            frame_stride=frame_stride, fps=fps, start=start, end=end, max_clips=max_clips,
            max_frames=max_frames, timeout=timeout, tail=tail, size=size,
            crop=crop, batch_size=batch_size, workers=_workers(workers), events=events,
            flow=flow, flow_method=flow_method, chunks=chunks,
        )  # fmt: skip
    if json_path is not None:
        if str(json_path) == "-":
            data = report.to_hara(vm.categories) if json_format == "hara" else report.to_json()
            click.echo(json.dumps(data, indent=1, ensure_ascii=False))
        else:
            write_json(report, json_path, format=json_format, categories=vm.categories)
    if json_path is None or str(json_path) != "-":
        _print_predictions(report, per_clip=per_clip)
    if plot_dir is not None:
        from .plots import plot_clip_timeline, timeline_path

        marker = " [random weights]" if report.random_weights else ""
        for video in report.videos:
            plot_clip_timeline(
                video, timeline_path(plot_dir, video.video), top=top_k,
                categories=vm.categories,
                title=f"{video.video}: class probability per clip ({report.arch}){marker}",
            )  # fmt: skip
        if not quiet:
            click.echo(f"{len(report.videos)} timeline(s) written to {plot_dir}", err=True)
    if report.failures:
        sys.exit(1)


@cli.command("flow")
@click.argument("inputs", nargs=-1, required=True, metavar="VIDEOS...")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="HDF5 file for the flow (uint8, see README).",
)
@click.option(
    "--method",
    type=click.Choice(["tvl1", "dis", "farneback"]),
    default="tvl1",
    show_default=True,
    help="tvl1 (the paper's), dis (about 100× faster), farneback.",
)
@click.option(
    "--short-side",
    type=click.IntRange(min=8),
    default=256,
    show_default=True,
    help="Resize frames so their short side has N pixels (aspect kept).",
)
@click.option(
    "--bound",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Clip displacements to ±B pixels; uint8 spans ±B.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the output. Without it, videos already complete are skipped.",
)
@click.option(
    "--workers",
    "-j",
    default="auto",
    show_default=True,
    metavar="N|auto",
    help="Processes, one video each (0: this process; auto: one per core).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--verbose", "-v", is_flag=True, help="Print each finished video.")
@errors_to_click
def flow_command(
    inputs: tuple[str, ...], output: Path, method: str, short_side: int, bound: float,
    overwrite: bool, workers: str, quiet: bool, verbose: bool,
) -> None:  # fmt: skip
    """Optical flow of VIDEOS (files, folders, @list.txt) into an HDF5 file, for two-stream
    networks (st-resnet-50): TV-L1 at short side 256 clipped to ±20 px, stored as uint8.

    \b
    Examples:
      feat3d flow videos/ -o flow.h5
      feat3d flow a.mp4 b.mkv -o flow.h5 --method dis -j 4
    """
    from .flow import FlowError, extract_flow

    try:
        processes = (os.cpu_count() or 1) if workers == "auto" else int(workers)
        if processes < 0:
            raise ValueError
    except ValueError:
        raise click.BadParameter("give a count ≥ 0 or auto", param_hint="--workers") from None
    try:
        with CliEvents(quiet=quiet, verbose=verbose, what="flow", unit="fields") as events:
            report = extract_flow(
                inputs, output, method=method, short_side=short_side, bound=bound,
                overwrite=overwrite, events=events, workers=processes,
            )  # fmt: skip
    except FlowError as error:
        raise click.ClickException(str(error)) from error
    if not quiet:
        click.echo(
            f"{len(report.written)} video(s) written to {output}, {len(report.skipped)} skipped "
            f"(already complete), {len(report.failures)} failed",
            err=True,
        )
    if report.failures:
        sys.exit(1)


def dataset_options(func: F) -> F:
    """How DATASET is read (shared by train and evaluate)."""
    options = [
        click.option("--val-split", type=click.FloatRange(0, 1, max_open=True), default=0.2,
                     show_default=True, help="Fraction of each class held out for validation "
                     "(a folder without train/ and val/, or a CSV without a split column)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the split (and of training's sampling and initialization)."),
        click.option("--train-list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="UCF-101/HMDB-51 style list of training videos (paths relative to "
                     "DATASET, optional label number)."),
        click.option("--val-list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="List of validation videos, same format."),
        click.option("--classes", "classes_file",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="classInd.txt ('1 ApplyEyeMakeup') or one class name per line."),
        click.option("--csv", "csv_file",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="CSV 'path,label[,split]' (Kinetics style), paths relative to DATASET."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _load_split(
    dataset: Path, val_split: float, seed: int, train_list: Path | None, val_list: Path | None,
    classes_file: Path | None, csv_file: Path | None,
):  # type: ignore[no-untyped-def]  # fmt: skip
    from .train import DatasetError, load_dataset

    try:
        return load_dataset(
            dataset, val_split=val_split, seed=seed, train_list=train_list, val_list=val_list,
            classes_file=classes_file, csv=csv_file,
        )  # fmt: skip
    except DatasetError as error:
        raise click.ClickException(str(error)) from error


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as error:
        raise click.BadParameter(f"{text!r}: give comma-separated numbers") from error


@cli.command("train")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: config.json, metrics.csv, last.pt, best.pt, train_state.pt.",
)
@dataset_options
@click.option(
    "--model",
    "-m",
    type=click.Choice(list_backbones()),
    default="resnet-18",
    show_default=True,
    help="Architecture to train from scratch.",
)
@click.option(
    "--pretrained",
    metavar="NAME|PATH",
    default=None,
    shell_complete=_complete_weights,
    help="Fine-tune these weights (their architecture replaces --model).",
)
@click.option(
    "--stage",
    type=click.Choice(["motion", "appearance", "st", "st-star"]),
    default=None,
    help="st-resnet-50 only: the training stage of Feichtenhofer et al.'s Table 2 (needs "
    "--flow, and --init-2d for the first stage or --pretrained RUN/last.pt for later ones).",
)
@click.option(
    "--flow",
    "flow_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --stage: the `feat3d flow` HDF5 file of DATASET.",
)
@click.option(
    "--init-2d",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    metavar="RESNET50.pth",
    help="With --stage: inflate these torchvision ResNet-50 ImageNet weights (first stage).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="With --stage: stop after N SGD steps (smoke runs).",
)
@click.option(
    "--finetune-from",
    type=click.Choice(BLOCKS),
    default=None,
    help="First trained block; all before it is frozen. Default with --pretrained: conv5.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--batch-size",
    "-b",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Clips per forward pass.",
)
@click.option(
    "--accumulate",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Forward passes per optimizer step (32 × 8 = the paper's batch of 256).",
)
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Learning rate. Default: 0.1 from scratch, 0.001 when fine-tuning.",
)
@click.option(
    "--scale-lr",
    is_flag=True,
    help="Linear scaling rule: train at lr × batch-size × accumulate × processes / 256 (the "
    "rate is meant for a batch of 256); config.json records it as effective_lr.",
)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option(
    "--dampening",
    type=float,
    default=0.9,
    show_default=True,
    help="SGD dampening (Hara et al.'s code).",
)
@click.option("--nesterov", is_flag=True, help="Nesterov momentum (needs --dampening 0).")
@click.option(
    "--weight-decay",
    type=float,
    default=None,
    help="Default: 0.001 from scratch, 1e-5 when fine-tuning.",
)
@click.option(
    "--lr-patience",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Validation epochs without a lower loss before the rate is divided by 10.",
)
@click.option(
    "--max-lr-drops",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Rate divisions before training stops at the next plateau.",
)
@click.option(
    "--clip-len",
    type=click.IntRange(min=1),
    default=None,
    help="Frames per clip (default: the pretrained weights', else 16).",
)
@click.option(
    "--frame-stride",
    type=click.IntRange(min=1),
    default=None,
    help="Every K-th frame of a clip-len×K window (default: weights', else 1).",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0),
    default=None,
    help="Sample frames at F per second (stored in the checkpoints and used by default with "
    "them). Default: the pretrained weights' rate, else native.",
)
@click.option(
    "--start",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Sample clips from this time on.",
)
@click.option(
    "--end",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Sample clips before this time.",
)
@click.option(
    "--max-clips",
    type=click.IntRange(min=1),
    default=None,
    help="Validate on at most N clips per video.",
)
@click.option(
    "--crop",
    type=click.IntRange(min=1),
    default=112,
    show_default=True,
    help="Side of the training and validation crops.",
)
@click.option(
    "--decode-size",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Short side frames are decoded at before multi-scale cropping.",
)
@click.option(
    "--scales",
    default="1,0.8409,0.7071,0.5946,0.5",
    show_default=True,
    help="Crop sides as fractions of the short side (Hara et al.: 1 .. 1/2).",
)
@click.option(
    "--flip",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Probability of a horizontal flip.",
)
@click.option(
    "--workers",
    "-j",
    default="auto",
    show_default=True,
    metavar="N|auto",
    help="Decoding processes.",
)
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="auto: fp16 autocast with loss scaling on CUDA, else fp32.",
)
@click.option(
    "--val-every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Validate every N epochs.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last epoch.")
@click.option("--quiet", "-q", is_flag=True, help="Only the final line.")
@errors_to_click
def train_command(
    dataset: Path, output: Path, val_split: float, seed: int, train_list: Path | None,
    val_list: Path | None, classes_file: Path | None, csv_file: Path | None, model: str,
    pretrained: str | None, finetune_from: str | None, epochs: int, batch_size: int,
    accumulate: int, lr: float | None, momentum: float, dampening: float, nesterov: bool,
    weight_decay: float | None, lr_patience: int, max_lr_drops: int, clip_len: int | None,
    frame_stride: int | None, fps: float | None, start: float | None, end: float | None,
    max_clips: int | None, crop: int, decode_size: int, scales: str,
    flip: float, workers: str, device: str, precision: str, val_every: int, resume: bool,
    quiet: bool, stage: str | None, flow_path: Path | None, init_2d: Path | None,
    max_steps: int | None, scale_lr: bool,
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
    """
    from .train import TrainError, TrainOptions, fit

    split = _load_split(dataset, val_split, seed, train_list, val_list, classes_file, csv_file)
    if stage is not None or model == "st-resnet-50":
        ctx = click.get_current_context()
        explicit_epochs = ctx.get_parameter_source("epochs") is not ParameterSource.DEFAULT
        _train_stage(
            split, output, stage=stage, flow_path=flow_path, init_2d=init_2d,
            pretrained=pretrained, epochs=epochs if explicit_epochs else None,
            batch_size=batch_size if ctx.get_parameter_source("batch_size")
            is not ParameterSource.DEFAULT else None,
            accumulate=accumulate if ctx.get_parameter_source("accumulate")
            is not ParameterSource.DEFAULT else 1,
            max_steps=max_steps, device=device, seed=seed,
            workers=_workers(workers), quiet=quiet,
            **({"crop": crop} if ctx.get_parameter_source("crop") is not ParameterSource.DEFAULT
               else {}),
        )  # fmt: skip
        return
    options = TrainOptions(
        model=model, pretrained=pretrained, finetune_from=finetune_from, epochs=epochs,
        batch_size=batch_size, accumulate=accumulate, lr=lr, momentum=momentum,
        dampening=dampening, nesterov=nesterov, weight_decay=weight_decay,
        lr_patience=lr_patience, max_lr_drops=max_lr_drops, clip_len=clip_len,
        frame_stride=frame_stride, fps=fps, start=start, end=end, max_clips=max_clips,
        crop=crop, decode_size=decode_size,
        scales=_floats(scales),
        flip=flip, workers=workers, device=device, precision=precision, seed=seed,
        val_every=val_every, scale_lr=scale_lr,
    )  # fmt: skip
    if not quiet:
        click.echo(
            f"{len(split.classes)} classes, {len(split.train)} training and {len(split.val)} "
            f"validation videos → {output}",
            err=True,
        )
    progress = _EpochProgress(quiet=quiet, epochs=epochs)
    try:
        with progress:
            report = fit(split, output, options, resume=resume, on_epoch=progress.epoch,
                         on_batch=progress.batch,
                         on_message=None if quiet else progress.message)  # fmt: skip
    except TrainError as error:
        raise click.ClickException(str(error)) from error
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    best = report.best
    click.echo(
        f"{report.epochs_run} epoch(s) run, {report.stopped}; best epoch {report.best_epoch}: "
        f"val top-1 {best.get('val_top1', float('nan')):.4f} → {output / 'best.pt'}",
        err=True,
    )


def _train_stage(
    split: Any, output: Path, *, stage: str | None, flow_path: Path | None,
    init_2d: Path | None, pretrained: str | None, workers: int | str, quiet: bool, device: str,
    **options: Any,
) -> None:  # fmt: skip
    """``train --model st-resnet-50 --stage ...``: one stage of the two-stream recipe."""
    from .model import select_device
    from .train.two_stream import run_stage

    if stage is None or flow_path is None:
        raise click.UsageError("st-resnet-50 trains in stages: give --stage and --flow FLOW.h5")
    if not quiet:
        click.echo(
            f"stage {stage}: {len(split.classes)} classes, {len(split.train)} training videos, "
            f"flow from {flow_path} → {output}",
            err=True,
        )

    def on_step(step: int, loss: float) -> None:
        if not quiet:
            click.echo(f"step {step}: loss {loss:.4f}", err=True)

    from .pipeline import resolve_workers

    chosen = select_device(device)
    report, checkpoint = run_stage(
        split, output, stage=stage, flow_path=flow_path, init_2d=init_2d,
        pretrained=pretrained, num_workers=resolve_workers(workers, chosen), device=chosen,
        on_step=on_step, **options,
    )  # fmt: skip
    click.echo(
        f"stage {stage}: {report.steps} step(s), last loss "
        f"{report.losses[-1] if report.losses else float('nan'):.4f} → {checkpoint}",
        err=True,
    )


class _EpochProgress:
    """A bar over an epoch's batches on a terminal, and one line per finished epoch."""

    def __init__(self, *, quiet: bool, epochs: int):
        self.quiet = quiet
        self.epochs = epochs
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> _EpochProgress:
        if not self.quiet and err_console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
            )  # fmt: skip
            self.task = self.progress.add_task("train", total=None)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def message(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=True)

    def batch(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def epoch(self, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        text = " ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in row.items()
        )
        self.message(text)


@cli.command("evaluate")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@dataset_options
@click.option(
    "--split",
    "which",
    type=click.Choice(["val", "train", "all"]),
    default="val",
    show_default=True,
    help="Which videos of DATASET to evaluate.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for metrics.json, per_class.csv, confusion.csv, predictions.json.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.png",
    help="Draw the confusion matrix (rows normalized per true class) into FILE.png "
    "(needs matplotlib).",
)
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workers", "-j", default="auto", show_default=True, metavar="N|auto")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling (runs its code).")
@two_stream_options
@errors_to_click
def evaluate_command(
    checkpoint: Path, dataset: Path, val_split: float, seed: int, train_list: Path | None,
    val_list: Path | None, classes_file: Path | None, csv_file: Path | None, which: str,
    output: Path | None, plot_path: Path | None, batch_size: int, workers: str, device: str,
    precision: str, trust_checkpoint: bool, flow: Path | None, flow_method: str, chunks: int,
) -> None:  # fmt: skip
    """Evaluate CHECKPOINT on DATASET the papers' way: non-overlapping clips, centre crop, clip
    softmax averaged per video. Prints video top-1/top-5 and clip accuracy.

    \b
    Examples:
      feat3d evaluate runs/motion/best.pt motion/
      feat3d evaluate runs/ucf/best.pt ucf101/ --val-list testlist01.txt \\
          --train-list trainlist01.txt --classes classInd.txt -o runs/ucf/eval
      feat3d evaluate runs/motion/best.pt motion/ --plot confusion.png
      feat3d evaluate runs/st4/last.pt ucf101/ --flow flow.h5 ...   # st-resnet-50
    """
    from .extraction import clip_options_for
    from .train import evaluate_videos, write_evaluation
    from .two_stream import TwoStreamOptions

    if plot_path is not None:
        require_matplotlib()
    split = _load_split(dataset, val_split, seed, train_list, val_list, classes_file, csv_file)
    vm = _load(None, str(checkpoint), device, precision, trust_checkpoint, None, quiet=False)
    if list(vm.categories) != list(split.classes):
        raise click.ClickException(
            f"{checkpoint} was trained on classes {vm.categories[:3]}…, DATASET has "
            f"{split.classes[:3]}…: they must be the same, in the same order"
        )
    items = {"val": split.val, "train": split.train, "all": [*split.train, *split.val]}[which]
    result = evaluate_videos(
        vm, items, split.classes, clips=clip_options_for(vm), batch_size=batch_size,
        workers=_workers(workers),
        two_stream=TwoStreamOptions(flow=flow, chunks=chunks, method=flow_method),
    )  # fmt: skip
    click.echo(result.summary())
    for failure in result.failures:
        click.echo(f"error: {failure.source}: {failure.message}", err=True)
    if output is not None:
        write_evaluation(result, split.classes, output)
        click.echo(f"written to {output}", err=True)
    if plot_path is not None:
        from .plots import plot_confusion

        plot_confusion(result.confusion, split.classes, plot_path)
        click.echo(f"confusion matrix drawn in {plot_path}", err=True)
    if result.failures:
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
    out_console().print(table)


@cli.group("weights", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
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
        source = urllib.parse.urlparse(row.source).netloc or row.source  # URLs: --json
        table.add_row(*(escape(cell) for cell in (
            row.name, row.model, str(row.classes),
            row.published.sampling if row.published else "–", source, sha or "–",
            str(row.path) if row.path else "–",
        )))  # fmt: skip
    out_console().print(table)
    click.echo(f"weights home: {weights_home()} (set FEAT3D_HOME to move it)")
    click.echo(f"torch.hub cache: {weights_cache_path(list_weights()[0]).parent}")


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


def _complete_registered(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    names = [row.name for row in known_weights() if row.path is not None]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def _complete_downloadable(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    names = [named.name for named in list_weights()]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


@weights_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--name",
    "-n",
    default=None,
    help="The name for --weights. Default: the file stem (torchvision's tag for its files).",
)
@click.option(
    "--model",
    "-m",
    type=click.Choice(list_backbones()),
    default=None,
    help="The architecture FILE must hold. Default: read from its keys and shapes.",
)
@click.option("--link", is_flag=True, help="Symlink to FILE instead of copying it.")
@click.option("--force", is_flag=True, help="Replace weights already registered as NAME.")
@click.option(
    "--trust-checkpoint", is_flag=True,
    help="Allow full unpickling of FILE (can run code hidden in it).",
)  # fmt: skip
@errors_to_click
def add_command(
    file: Path, name: str | None, model: str | None, link: bool, force: bool,
    trust_checkpoint: bool,
) -> None:  # fmt: skip
    """Verify checkpoint FILE and copy it into the weights home under NAME, so that
    `--weights NAME` works in every command. FILE must load strictly into an architecture,
    and match the published checksum (torchvision) or layout (Hara, C3D) when NAME is a
    published one. The home is $FEAT3D_HOME, else <torch hub dir>/feat3d.

    \b
    Examples:
      feat3d weights add resnet-34-kinetics.pth
      feat3d weights add ~/Downloads/r3d18_K_200ep.pth --link
      feat3d weights add r3d_18-b3b3357e.pth --name r3d_18.kinetics400_v1
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entry = add_weights(
            file, name=name, model=model, link=link, replace=force, trust=trust_checkpoint
        )
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    how = "linked" if entry.linked else "copied"
    click.echo(
        f"added {entry.name}: {entry.arch}, {entry.classes} classes, {entry.format} format, "
        f"sha256 {entry.sha256[:12]}… ({how} to {entry.path}); use --weights {entry.name}"
    )


@weights_group.command("download")
@click.argument("name", shell_complete=_complete_downloadable)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@errors_to_click
def download_command(name: str, quiet: bool) -> None:
    """Download torchvision's Kinetics-400 weights NAME into the torch hub cache and check
    their hash. For checkpoints shared on Google Drive, print where to get the file and the
    `feat3d weights add` command to run.

    \b
    Examples:
      feat3d weights download r3d_18.kinetics400_v1
      feat3d weights download r2plus1d_18.kinetics400_v1 -q
    """
    path = download_weights(name, progress=not quiet and sys.stderr.isatty())
    click.echo(f"{name}: {path}")


@weights_group.command("remove")
@click.argument("name", shell_complete=_complete_registered)
@errors_to_click
def remove_command(name: str) -> None:
    """Forget weights NAME and delete its file from the weights home (a linked file's target
    stays), or delete torchvision's download from the torch hub cache.

    \b
    Example:
      feat3d weights remove resnet-34-kinetics
    """
    for path in remove_weights(name):
        click.echo(f"removed {path}")


def _print_predictions(report: ClassifyReport, *, per_clip: bool) -> None:
    """The model once, then the labels: one table of all videos with ``-k 1``, else a table
    per video."""
    console = out_console()
    marker = escape(" [random weights]") if report.random_weights else ""
    console.print(escape(f"{report.arch} ({report.weights})") + marker, highlight=False)
    if report.videos and all(len(video.top_k) == 1 for video in report.videos) and not per_clip:
        table = Table()
        for name, justify in (("video", "left"), ("label", "left"), ("score", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for video in report.videos:
            best = video.top_k[0]
            table.add_row(escape(video.video), escape(best.label) + marker, f"{best.score:.4f}")
        console.print(table)
        return
    for video in report.videos:
        console.print(escape(video.video), style="bold", highlight=False)
        table = Table()
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


@cli.command("svm")
@click.argument("feats", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--labels",
    "-l",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV video,label[,split]; split is train or test (val/validation = test) on every row "
    "or on none (then k-fold). A video is an output key, the path it was extracted from, a path "
    "ending in a key, the end of one key, or the file name of one key.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=3,
    show_default=True,
    help="Stratified folds when the labels have no split column.",
)
@click.option(
    "--pca",
    "pca_text",
    default="",
    metavar="D1,D2,...",
    help="Also evaluate after PCA (fitted on each training part) to these dimensions, e.g. "
    "10,50,100,200,300 as in Tran et al.; sizes not below min(train videos, D) are skipped.",
)
@click.option(
    "--c",
    "c_text",
    default="0.01,0.1,1,10,100",
    show_default=True,
    metavar="C1,C2,...",
    help="SVM C values; the best is chosen by stratified 3-fold cross-validation on the "
    "training part only.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of folds and solver.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report as JSON to this file ('-' for stdout).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.png",
    help="With --pca: draw accuracy against PCA dimensions (Tran et al.'s Fig. 3) into "
    "FILE.png (needs matplotlib).",
)
@errors_to_click
def svm_command(
    feats: Path, labels: Path, folds: int, pca_text: str, c_text: str, seed: int,
    json_path: Path | None, plot_path: Path | None,
) -> None:  # fmt: skip
    """Linear-SVM accuracy of extracted features FEATS (h5, json or npy output of extract):
    per-video mean of clip features, L2-normalized, LinearSVC with C chosen on the training
    part (the C3D/Res3D protocol); mean ± std over splits, and over PCA sizes with --pca.

    \b
    Examples:
      feat3d svm feats.h5 --labels labels.csv
      feat3d svm feats.h5 -l ucf101_split1.csv --pca 10,50,100,200,300
      feat3d svm feats/ -l labels.csv --folds 5 --c 0.1,1,10 --json svm.json
      feat3d svm feats.h5 -l labels.csv --pca 10,50,100,200,300 --plot svm_pca.png
    """
    try:
        pca_dims = parse_number_list(pca_text, kind=int)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--pca") from error
    if plot_path is not None:
        if not pca_dims:
            raise click.BadParameter("needs --pca D1,D2,... (its x axis)", param_hint="--plot")
        require_matplotlib()
    try:
        c_grid = parse_number_list(c_text, kind=float)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--c") from error
    report = svm_evaluate(feats, labels, folds=folds, pca_dims=pca_dims, c_grid=c_grid, seed=seed)
    if plot_path is not None:
        from .plots import plot_svm_pca

        plot_svm_pca(report, plot_path)
        click.echo(f"accuracy against PCA dimensions drawn in {plot_path}", err=True)
    data = json.dumps(report.to_json(), indent=1, ensure_ascii=False)
    if json_path is not None and str(json_path) == "-":
        click.echo(data)
        return
    if json_path is not None:
        json_path.write_text(data + "\n", encoding="utf-8")
    for line in summary_lines(report):
        click.echo(line)
    if pca_dims:
        table = Table(title="SVM accuracy after PCA", title_justify="left")
        for column in ("dims", "accuracy (%)", "C per split"):
            table.add_column(column, justify="right")
        for row in pca_rows(report):
            table.add_row(*row)
        out_console().print(table)
        if report.pca_skipped:
            skipped = ", ".join(map(str, report.pca_skipped))
            click.echo(f"PCA sizes skipped (not below min(train videos, D)): {skipped}")


@cli.command("merge")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT instead of adding to it.")
@errors_to_click
def merge_command(output: Path, parts: tuple[Path, ...], overwrite: bool) -> None:
    """Merge HDF5 outputs of `feat3d extract` (e.g. the shards of one run) into OUTPUT.

    The parts must have been made with the same options; a video in two parts must have the
    same content in both (else nothing is written); a success in one part wins over an error
    record in another. A part left by a killed run (with its journal) is completed first.

    
    Examples:
      feat3d merge feats.h5 feats.0.h5 feats.1.h5 feats.2.h5
      feat3d merge all.h5 node*/part.h5 --overwrite
    """
    from .io.merge import merge_outputs

    report = merge_outputs(output, list(parts), overwrite=overwrite)
    for part in report.parts:
        click.echo(
            f"{part.path}: {part.videos} videos, {part.duplicates} duplicates skipped, "
            f"{part.errors} errors",
            err=True,
        )
    click.echo(
        f"{output}: {report.videos} videos, {report.duplicates} duplicates skipped, "
        f"{report.errors} error records",
        err=True,
    )


@cli.command("info")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--video",
    "video_key",
    metavar="NAME",
    default=None,
    help="One video of an output (its key): attributes and each clip's frames and seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling (runs its code).")
@errors_to_click
def info_command(path: Path, video_key: str | None, as_json: bool, trust_checkpoint: bool) -> None:
    """What FILE holds: an extract output (HDF5, JSON Lines, npy folder) — its options,
    videos, clips, feature size, failures, pending journal — or a checkpoint — architecture,
    format, classes, normalization, clip length, parameters, SHA-256.

    \b
    Examples:
      feat3d info feats.h5
      feat3d info feats.h5 --video class_a/clip01.mp4
      feat3d info runs/motion/best.pt --json
    """
    from .info import describe

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = describe(path, video=video_key, trust=trust_checkpoint)
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
    else:
        click.echo(result.to_text())


add_config_option(cli)  # after every command is defined: each gets --config FILE.toml


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="feat3d")


if __name__ == "__main__":
    main()
