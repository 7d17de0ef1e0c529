"""The ``feat3d`` command line: the group and every shared option (declared once). Each
command lives in ``feat3d.commands`` and is imported when it is first needed; the group's
machinery (lazy loading, errors mapped to exit statuses) and the param types are in
:mod:`feat3d.clikit`."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem
from rich.console import Console

from . import __version__
from .backbones import list_backbones
from .backbones.hub import weight_names
from .clikit import LazyGroup, LocationParam, ShardParam, SizeParam, WorkersParam
from .model import LAYERS
from .options import ClipOptions, ModelOptions, PoolOptions, TwoStreamOptions
from .precision import PRECISIONS

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

# Command name → "module:attribute", imported on first use.
COMMANDS: dict[str, str] = {
    name: f"feat3d.commands.{module}:{attribute}"
    for name, module, attribute in (
        ("extract", "extract", "extract_command"),
        ("classify", "classify", "classify_command"),
        ("flow", "flow", "flow_command"),
        ("train", "train", "train_command"),
        ("evaluate", "evaluate", "evaluate_command"),
        ("models", "models", "models_command"),
        ("weights", "weights", "weights_group"),
        ("svm", "svm", "svm_command"),
        ("merge", "merge", "merge_command"),
        ("info", "info", "info_command"),
        ("pool", "pool", "pool_command"),
    )
}

_err_console = Console(stderr=True)


def err_console() -> Console:
    """The stderr console of this run (rebuilt by each run of the group)."""
    return _err_console


# ---------------------------------------------------------------------------------------------
# Shared options: each name is declared here once; a command varies only what it documents
# differently (its default, its help text).


def _complete_weights(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``--weights`` completes to registered and named weights, then to files."""
    names = [name for name in weight_names() if name.startswith(incomplete)]
    return [CompletionItem(incomplete, type="file"), *(CompletionItem(name) for name in names)]


def collect(name: str, build: Callable[..., Any], params: Mapping[str, str]) -> Decorator:
    """Hand the command one option object, ``name=build(...)``, made of the parameters
    ``params`` names (parameter → field), instead of those parameters: the command line's
    options become the API's option objects in one place, validated when they are made."""

    def apply(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            fields = {field: kwargs.pop(param) for param, field in params.items()}
            return func(*args, **{name: build(**fields)}, **kwargs)

        return wrapper  # type: ignore[return-value]

    return apply


def _fields(*names: str, **renamed: str) -> dict[str, str]:
    return {**{name: name for name in names}, **renamed}


#: Parameters that make up a ModelOptions (``--model`` is its ``arch``).
MODEL_FIELDS = _fields("weights", "device", "precision", "num_classes", "trust_checkpoint",
                       model="arch", compile_model="compile")  # fmt: skip
#: Parameters that make up a TwoStreamOptions.
TWO_STREAM_FIELDS = _fields("flow", "chunks", "streams", "flow_weights", flow_method="method")
#: Parameters that make up a ClipOptions.
CLIP_FIELDS = _fields("clip_len", "frame_stride", "fps", "start", "end", "max_clips", "stride",
                      "max_frames", "timeout", "tail", "size", "crop", "window",
                      "clips_per_video", "crops", "frame_rate", "retries")  # fmt: skip


def _stack(*options: Decorator) -> Decorator:
    """Apply ``options`` so that they list in the given order."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def output_option(
    help: str, *, kind: str = "any", required: bool = True, urls: bool = False
) -> Decorator:
    """``--output/-o``; ``kind`` is ``file``, ``folder`` or ``any``; ``urls``: a URL is
    taken too (as a ``str``)."""
    only = {"file": {"dir_okay": False}, "folder": {"file_okay": False}, "any": {}}[kind]
    path = LocationParam(urls=urls, path_type=Path, **only)  # type: ignore[arg-type]
    return click.option("--output", "-o", required=required, type=path, default=None, help=help)


def model_option(default: str | None = None, help: str = "") -> Decorator:
    """``--model/-m``: a registered architecture."""
    return click.option(
        "--model", "-m", type=click.Choice(list_backbones()), default=default,
        show_default=default is not None,
        help=help or "Architecture. Default: the one the weights record, else r3d_18.",
    )  # fmt: skip


def weights_option() -> Decorator:
    """``--weights/-w``: a checkpoint path or a weights name."""
    return click.option(
        "--weights", "-w", default="DEFAULT", show_default=True, metavar="NAME|PATH|none",
        shell_complete=_complete_weights,
        help="Checkpoint path (Hara 2017/2020, torchvision or feat3d format), a named weights "
        "(r3d_18.kinetics400_v1), DEFAULT (the model's published weights) or none (random).",
    )  # fmt: skip


def pretrained_option() -> Decorator:
    """train's ``--pretrained``: the weights to fine-tune (completed like ``--weights``)."""
    return click.option(
        "--pretrained", metavar="NAME|PATH", default=None, shell_complete=_complete_weights,
        help="Fine-tune these weights (their architecture replaces --model).",
    )  # fmt: skip


def device_option() -> Decorator:
    return click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
        help="Where the model runs.",
    )  # fmt: skip


def precision_option(default: str = "fp32") -> Decorator:
    return click.option(
        "--precision", type=click.Choice(["auto", *PRECISIONS]), default=default,
        show_default=True,
        help="auto: fp32 on a CPU; in train, fp16 autocast with loss scaling on CUDA. bf16: "
        "bf16 weights on CPUs with bf16 instructions (refused on other CPUs), autocast on CUDA; "
        "fp16: autocast, CUDA only. See README, Speed.",
    )  # fmt: skip


def trust_option(help: str = "") -> Decorator:
    return click.option(
        "--trust-checkpoint", is_flag=True,
        help=help or "Load a checkpoint that holds pickled Python objects with full unpickling. "
        "This can run code hidden in the file: only for files you trust.",
    )  # fmt: skip


def compile_option() -> Decorator:
    return click.option(
        "--compile", "compile_model", is_flag=True,
        help="Run the network through torch.compile: the first batch compiles (seconds to a "
        "minute), later ones run faster (the docs' speed page).",
    )  # fmt: skip


def num_classes_option() -> Decorator:
    return click.option(
        "--num-classes", type=click.IntRange(min=1), default=None,
        help="Classes for random initialization; with weights it is read from the file.",
    )  # fmt: skip


def model_options(func: F) -> F:
    """Options that choose the network and where it runs (extract and classify), handed to
    the command as ``network: ModelOptions``."""
    return _stack(
        model_option(), weights_option(), device_option(), precision_option(),
        num_classes_option(), trust_option(), compile_option(),
    )(collect("network", ModelOptions, MODEL_FIELDS)(func))  # fmt: skip


def batch_size_option(default: int = 8, help: str = "Clips per forward pass.") -> Decorator:
    return click.option(
        "--batch-size", "-b", type=click.IntRange(min=1), default=default, show_default=True,
        help=help,
    )  # fmt: skip


def workers_option(help: str = "Decoding processes (0: decode in the main process).") -> Decorator:
    return click.option(
        "--workers", "-j", type=WorkersParam(), default="auto", show_default=True, help=help
    )


#: Parameters of the run's engine (RunOptions fields), handed to a command as ``engine``.
ENGINE_FIELDS = _fields("engine", "address", "actors", "decode_cpus", "gpus_per_actor")


def feature_options(func: F) -> F:
    """What ``extract`` stores of each clip: the layer, pooled or not, its views, its type."""
    return _stack(
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
    return _stack(
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
    )(collect("pooling", PoolOptions.chosen, _fields("segments", "every", "per_frame",
                                                     "interpolate"))(func))  # fmt: skip


def engine_options(func: F) -> F:
    """Where the work runs: a shard of the inputs, this machine's devices or processes, or a
    Ray cluster (extract). The engine's fields reach the command as ``engine`` (RunOptions
    fields by name); ``shard`` and ``devices`` as themselves."""
    return _stack(
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
                     help="Parquet: clips per part file (default 10000); a killed run redoes "
                     "at most the part it was filling."),
    )(collect("engine", dict, ENGINE_FIELDS)(func))  # fmt: skip


def quiet_option(help: str = "No progress output.") -> Decorator:
    return click.option("--quiet", "-q", is_flag=True, help=help)


def verbose_option() -> Decorator:
    return click.option("--verbose", "-v", is_flag=True, help="Print each finished video.")


def overwrite_option(help: str) -> Decorator:
    return click.option("--overwrite", is_flag=True, help=help)


def seed_option(help: str) -> Decorator:
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


def json_option(help: str, *, to_file: bool = False) -> Decorator:
    """``--json``: a flag (JSON instead of a table) or, ``to_file``, a file ('-': stdout)."""
    kind: dict[str, Any] = (
        {"type": click.Path(path_type=Path), "default": None} if to_file else {"is_flag": True}
    )
    return click.option("--json", "json_path" if to_file else "as_json", help=help, **kind)


def plot_option(help: str, *, folder: bool = False) -> Decorator:
    """``--plot``: a PNG file, or a folder of them."""
    path = click.Path(path_type=Path, **({"file_okay": False} if folder else {"dir_okay": False}))
    return click.option(
        "--plot", "plot_path", type=path, default=None, metavar="DIR" if folder else "FILE.png",
        help=help,
    )  # fmt: skip


def format_option(choices: list[str], help: str, default: str | None = None) -> Decorator:
    """``--format``: extract's output format, or classify's JSON schema."""
    return click.option(
        "--format", "output_format", type=click.Choice(choices), default=default,
        show_default=default is not None, help=help,
    )  # fmt: skip


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


def frame_rate_option() -> Decorator:
    """``--frame-rate``: folders of frame images are videos at this rate."""
    return click.option(
        "--frame-rate", type=click.FloatRange(min=0, min_open=True), default=None, metavar="FPS",
        help="Read each folder of frame images (image_00001.jpg ..., any sorted *.jpg/*.png) as "
        "one video at FPS frames per second. Without it only folders with Hara et al.'s "
        "n_frames or fps file are videos (at the fps file's rate, else 30).",
    )  # fmt: skip


def _seconds(name: str, help: str) -> Decorator:
    return click.option(
        name, type=click.FloatRange(min=0), default=None, metavar="SECONDS", help=help
    )


def sampling_options(**help: str) -> Decorator:
    """How clips are sampled in time (extract, classify, train); ``help`` by parameter name."""
    count = click.IntRange(min=1)
    return _stack(
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
    return _stack(
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
    return _stack(
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


def dataset_options(func: F) -> F:
    """How DATASET is read (train and evaluate)."""
    file = click.Path(exists=True, dir_okay=False, path_type=Path)
    return _stack(
        click.option("--val-split", type=click.FloatRange(0, 1, max_open=True), default=0.2,
                     show_default=True, help="Fraction of each class held out for validation "
                     "(a folder without train/ and val/, or a CSV without a split column)."),
        seed_option("Seed of the split (and of training's sampling and initialization)."),
        click.option("--train-list", type=file,
                     help="UCF-101/HMDB-51 style list of training videos (paths relative to "
                     "DATASET, optional label number)."),
        click.option("--val-list", type=file, help="List of validation videos, same format."),
        click.option("--classes", "classes_file", type=file,
                     help="classInd.txt ('1 ApplyEyeMakeup') or one class name per line."),
        click.option("--csv", "csv_file", type=file,
                     help="CSV 'path,label[,split]' (Kinetics style), paths relative to DATASET."),
        click.option("--annotation", "annotation_file", type=file, metavar="FILE.json",
                     help="Hara et al.'s annotation JSON (ucf101_01.json, hmdb51_1.json, "
                     "kinetics.json, ActivityNet): its training/validation subsets are the "
                     "split; DATASET is the frame root (root/<label>/<id>, ActivityNet "
                     "root/v_<id>)."),
        frame_rate_option(),
    )(func)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The group


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", "-V", prog_name="feat3d")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Spatio-temporal features and action labels from videos with 3D ResNets.

    \b
    Examples:
      feat3d extract videos/ -o feats.h5 --weights r3d_18.kinetics400_v1
      feat3d classify clip.mp4 --per-clip
    """
    global _err_console
    # rich reads NO_COLOR and decides colours when a Console is built: build it per run, so
    # the environment and stderr of this run count, not those at import time.
    _err_console = Console(stderr=True)
    if os.environ.get("NO_COLOR"):  # https://no-color.org: any non-empty value
        ctx.color = False


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="feat3d")


if __name__ == "__main__":
    # ``python -m feat3d.cli``: run the imported module's group, the one the commands share.
    from feat3d.cli import main as imported_main

    imported_main()
