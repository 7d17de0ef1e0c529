"""The ``feat3d`` command line: the group and the general shared options (declared once);
the options about videos and runs over them are in :mod:`feat3d.cli_video`. Each command
lives in ``feat3d.commands`` and is imported when it is first needed; the group's machinery
(lazy loading, errors mapped to exit statuses) and the param types are in
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
from .clikit import LazyGroup, LocationParam, WorkersParam
from .options import ModelOptions
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


def stack_options(*options: Decorator) -> Decorator:
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
    return stack_options(
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
#: Parameters that make up a PoolOptions (pooling in time).
POOL_FIELDS = _fields("segments", "every", "per_frame", "interpolate")


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


def frame_rate_option() -> Decorator:
    """``--frame-rate``: folders of frame images are videos at this rate."""
    return click.option(
        "--frame-rate", type=click.FloatRange(min=0, min_open=True), default=None, metavar="FPS",
        help="Read each folder of frame images (image_00001.jpg ..., any sorted *.jpg/*.png) as "
        "one video at FPS frames per second. Without it only folders with Hara et al.'s "
        "n_frames or fps file are videos (at the fps file's rate, else 30).",
    )  # fmt: skip


def dataset_options(func: F) -> F:
    """How DATASET is read (train and evaluate)."""
    file = click.Path(exists=True, dir_okay=False, path_type=Path)
    return stack_options(
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
